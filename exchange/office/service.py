"""ExchangeService: the office node's gRPC API for agency systems.

A thin grpc.aio servicer: the codec turns requests into ``exchange.core.api``
types and results into responses, ``OfficeNode`` does the work, errors become
one status each. It builds and reads no protobuf message itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from exchange._pb.liaison.v1 import exchange_pb2_grpc
from exchange.core.api import SendResult
from exchange.core.codec import attachment as attach_codec
from exchange.core.codec import service as codec
from exchange.core.codec.service import EXCHANGE_SERVICE
from exchange.core.errors import ConfigError
from exchange.office.node import OfficeNode
from exchange.runtime.grpcutil import Access, grpc_errors, grpc_stream_errors, peer_of

__all__ = ["SERVICE_NAME", "ExchangeServicer", "agency_access"]

SERVICE_NAME = EXCHANGE_SERVICE
Ctx = grpc.aio.ServicerContext[Any, Any]


def agency_access(clients: tuple[str, ...]) -> Access:
    """The agency client certificates this office serves: exactly those named, never a wildcard."""
    if not clients:
        raise ConfigError("an office must name the agency client certificates it serves ([tls] clients)")
    return Access(default=frozenset(f"client:{c}" for c in clients))


class ExchangeServicer(exchange_pb2_grpc.ExchangeServiceServicer):
    def __init__(self, node: OfficeNode, access: Access | None = None) -> None:
        self.node = node
        self.access = access

    def add_to_server(self, server: grpc.aio.Server) -> None:
        exchange_pb2_grpc.add_ExchangeServiceServicer_to_server(self, server)

    # Requests and responses are typed by the generated base class; only the codec reads them.
    async def _send(self, request: codec.SendPb, context: Ctx) -> SendResult:
        peer = peer_of(context)
        return await self.node.send(codec.send_request_from_pb(request), agency=str(peer) if peer else "")

    @grpc_errors
    async def SendAlert(self, request: Any, context: Ctx) -> Any:
        return codec.send_alert_response_to_pb(await self._send(request, context))

    @grpc_errors
    async def SendCaseMessage(self, request: Any, context: Ctx) -> Any:
        return codec.send_case_message_response_to_pb(await self._send(request, context))

    @grpc_errors
    async def SendConsularRequest(self, request: Any, context: Ctx) -> Any:
        return codec.send_consular_request_response_to_pb(await self._send(request, context))

    @grpc_stream_errors
    async def Subscribe(self, request: Any, context: Ctx) -> AsyncIterator[Any]:
        after_cursor, include_read = codec.subscribe_request_from_pb(request)
        async for delivery in self.node.subscribe(after_cursor, include_read):
            yield codec.subscribe_response_to_pb(delivery)

    @grpc_errors
    async def Acknowledge(self, request: Any, context: Ctx) -> Any:
        read = await self.node.acknowledge(codec.acknowledge_request_from_pb(request))
        return codec.acknowledge_to_pb(read)

    @grpc_errors
    async def GetStatus(self, request: Any, context: Ctx) -> Any:
        return codec.status_to_pb(await self.node.status(codec.status_request_from_pb(request)))

    @grpc_errors
    async def ListOffices(self, request: Any, context: Ctx) -> Any:
        return codec.offices_to_pb(self.node.offices())

    @grpc_errors
    async def GetCase(self, request: Any, context: Ctx) -> Any:
        case_id = codec.case_request_from_pb(request)
        return codec.case_to_pb(case_id, await self.node.case(case_id))

    @grpc_errors
    async def UploadAttachment(self, request_iterator: AsyncIterator[Any], context: Ctx) -> Any:
        async def pieces() -> AsyncIterator[tuple[str, str, bytes]]:
            async for chunk in request_iterator:
                yield attach_codec.upload_piece(chunk)

        peer = peer_of(context)
        ref = await self.node.attachments.upload(pieces(), agency=str(peer) if peer else "")
        return attach_codec.upload_response_to_pb(ref)

    @grpc_stream_errors
    async def DownloadAttachment(self, request: Any, context: Ctx) -> AsyncIterator[Any]:
        message_id, index = attach_codec.download_request_from_pb(request)
        async for item in self.node.attachments.download(message_id, index):
            yield attach_codec.download_chunk_to_pb(item)
