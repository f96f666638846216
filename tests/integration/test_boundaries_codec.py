"""The codec boundary against a real gRPC server that answers what no honest node sends.

A stand-in ExchangeService/AuditService (real ``grpc`` server on a free port)
answers with an unknown enum number or leaf bytes that do not parse; the SDK
and ``AuditClient`` must raise ``CodecError`` (mapped ``from`` the foreign
error), not a ``ValueError`` or protobuf ``DecodeError``.
"""

from __future__ import annotations

from concurrent import futures

import grpc
import pytest
from google.protobuf.message import DecodeError

from exchange._pb.liaison.v1 import audit_pb2, audit_pb2_grpc, exchange_pb2, exchange_pb2_grpc
from exchange.client.sdk import Client
from exchange.core.errors import CodecError
from gateway.client import AuditClient

MID = "01999999-9999-7999-8999-999999999999"
GARBAGE = b"\xff\xff\xff"


class LyingExchange(exchange_pb2_grpc.ExchangeServiceServicer):
    def GetStatus(self, request, context):
        return exchange_pb2.GetStatusResponse(
            message_id=request.message_id,
            recipients=[exchange_pb2.RecipientStatus(recipient="tj-mvd-moscow", state=99)],
        )


class LyingAudit(audit_pb2_grpc.AuditServiceServicer):
    def Query(self, request, context):
        return audit_pb2.QueryResponse(records=[audit_pb2.LoggedRecord(index=0, entry=GARBAGE)])

    def Tail(self, request, context):
        yield audit_pb2.TailResponse(logged_record=audit_pb2.LoggedRecord(index=0, entry=GARBAGE))


@pytest.fixture(scope="module")
def target():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    exchange_pb2_grpc.add_ExchangeServiceServicer_to_server(LyingExchange(), server)
    audit_pb2_grpc.add_AuditServiceServicer_to_server(LyingAudit(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(grace=None)


def test_sdk_maps_an_unknown_receipt_state_to_codec_error(target: str) -> None:
    with Client(target, timeout=5.0) as client, pytest.raises(CodecError) as info:
        client.status(MID)
    assert isinstance(info.value.__cause__, ValueError)


def test_audit_client_maps_unparsable_leaf_bytes_to_codec_error(target: str) -> None:
    with AuditClient(target, timeout=5.0) as client:
        with pytest.raises(CodecError) as query:
            client.query()
        with pytest.raises(CodecError) as tail:
            next(client.tail(0, idle_s=2.0))
    assert isinstance(query.value.__cause__, DecodeError)
    assert isinstance(tail.value.__cause__, DecodeError)
