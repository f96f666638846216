"""The codec boundary: crafted bad input comes out as the project's error, never a foreign one.

Each case feeds one decoder (or a client call that encodes before sending)
input no honest peer sends: an unknown enum number, bytes that do not parse,
a response without its payload. The result must be ``CodecError`` (or its
``OversizeError``), raised ``from`` the foreign exception when there was one,
so that no ``ValueError``, ``KeyError`` or protobuf ``DecodeError`` escapes
``exchange.core.codec``, ``gateway.audit.codec`` or ``gateway.client``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from google.protobuf.message import DecodeError

from exchange._pb.liaison.v1 import audit_pb2, body_pb2, exchange_pb2
from exchange.core.codec import service as codec
from exchange.core.codec.directory import MAX_SIGNED_DIRECTORY_BYTES
from exchange.core.errors import CodecError, OversizeError
from gateway.audit import codec as audit_codec
from gateway.client import AuditClient, AuditFilter

GARBAGE = b"\xff\xff\xff"  # an invalid tag: DecodeError from protobuf


@dataclass(frozen=True)
class Case:
    call: Callable[[], Any]
    error: type[CodecError]
    cause: type[BaseException] | None  # the foreign exception it was mapped from, if any


def _alert_request(handling: int) -> exchange_pb2.SendAlertRequest:
    return exchange_pb2.SendAlertRequest(
        options=exchange_pb2.SendOptions(recipients=["tj-mvd-moscow"], handling=handling),
        alert=body_pb2.Alert(category=1, priority=1, subject="s", text="t"),
    )


# exchange/core/codec/service.py: ExchangeService messages, both directions.
EXCHANGE_CASES = {
    "status-unknown-receipt-state": Case(
        lambda: codec.status_from_pb(
            exchange_pb2.GetStatusResponse(recipients=[exchange_pb2.RecipientStatus(recipient="a", state=99)])
        ),
        CodecError,
        ValueError,
    ),
    "status-unknown-rejection-reason": Case(
        lambda: codec.status_from_pb(
            exchange_pb2.GetStatusResponse(
                recipients=[exchange_pb2.RecipientStatus(recipient="a", rejection=99)]
            )
        ),
        CodecError,
        ValueError,
    ),
    "offices-unknown-kind": Case(
        lambda: codec.offices_from_pb(
            exchange_pb2.ListOfficesResponse(offices=[exchange_pb2.OfficeInfo(id="a", may_send=[99])])
        ),
        CodecError,
        ValueError,
    ),
    "delivery-unknown-priority": Case(
        lambda: codec.delivery_from_pb(exchange_pb2.Delivery(kind=1, priority=99)),
        CodecError,
        ValueError,
    ),
    "case-unknown-kind": Case(
        lambda: codec.case_from_pb(exchange_pb2.GetCaseResponse(entries=[exchange_pb2.CaseEntry(kind=99)])),
        CodecError,
        ValueError,
    ),
    "send-unknown-handling": Case(
        lambda: codec.send_request_from_pb(_alert_request(99)), CodecError, ValueError
    ),
    "subscribe-without-delivery": Case(
        lambda: codec.subscribe_response_from_pb(exchange_pb2.SubscribeResponse()), CodecError, None
    ),
}

# gateway/audit/codec.py: AuditService and DirectoryService messages, both directions.
AUDIT_CASES = {
    "query-unknown-verdict-number": Case(
        lambda: audit_codec.query_request_from_pb(audit_pb2.QueryRequest(verdict=99)),
        CodecError,
        ValueError,
    ),
    "query-filter-unknown-label": Case(
        lambda: audit_codec.query_request_to_pb(AuditFilter(kind="no-such-kind")), CodecError, KeyError
    ),
    "tail-entry-does-not-parse": Case(
        lambda: audit_codec.tail_response_from_pb(
            audit_pb2.TailResponse(logged_record=audit_pb2.LoggedRecord(index=0, entry=GARBAGE))
        ),
        CodecError,
        DecodeError,
    ),
    "query-entry-does-not-parse": Case(
        lambda: audit_codec.query_response_from_pb(
            audit_pb2.QueryResponse(records=[audit_pb2.LoggedRecord(index=0, entry=GARBAGE)])
        ),
        CodecError,
        DecodeError,
    ),
    "tree-head-missing": Case(
        lambda: audit_codec.tree_head_response_from_pb(audit_pb2.GetTreeHeadResponse()), CodecError, None
    ),
    "stats-unknown-kind": Case(
        lambda: audit_codec.stats_from_pb(
            audit_pb2.StatsResponse(rows=[audit_pb2.StatsRow(sender="a", kind=99, count=1)])
        ),
        CodecError,
        ValueError,
    ),
}


def _check(case: Case) -> None:
    with pytest.raises(case.error) as info:
        case.call()
    assert type(info.value).__module__ == "exchange.core.errors"
    if case.cause is not None:
        assert isinstance(info.value.__cause__, case.cause), "mapped with `raise ... from e`"


@pytest.mark.parametrize("case", EXCHANGE_CASES.values(), ids=EXCHANGE_CASES.keys())
def test_exchange_codec_maps_foreign_errors(case: Case) -> None:
    _check(case)


@pytest.mark.parametrize("case", AUDIT_CASES.values(), ids=AUDIT_CASES.keys())
def test_audit_codec_maps_foreign_errors(case: Case) -> None:
    _check(case)


# gateway/client.py: what the caller hands in is encoded (and refused) before anything is sent,
# so no server is needed: the channel to a closed port is never used.
@pytest.fixture
def client():
    with AuditClient("127.0.0.1:9", timeout=1.0) as c:
        yield c


CLIENT_CASES = {
    "publish-garbage-directory": (lambda c: c.publish_directory(GARBAGE), CodecError, DecodeError),
    "publish-oversize-directory": (
        lambda c: c.publish_directory(b"\0" * (MAX_SIGNED_DIRECTORY_BYTES + 1)),
        OversizeError,
        None,
    ),
    "query-unknown-label": (lambda c: c.query(AuditFilter(verdict="no-such-verdict")), CodecError, KeyError),
}


@pytest.mark.parametrize(("call", "error", "cause"), CLIENT_CASES.values(), ids=CLIENT_CASES.keys())
def test_audit_client_refuses_bad_input_with_project_errors(client, call, error, cause) -> None:
    _check(Case(lambda: call(client), error, cause))
