"""ExchangeService: the office node's gRPC API for agency systems.

A thin grpc.aio servicer: the codec turns requests into ``exchange.core.api``
types, ``OfficeNode`` does the work, errors become one status each.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from exchange._pb.liaison.v1 import exchange_pb2, exchange_pb2_grpc
from exchange.codec import attachment as attach_codec
from exchange.codec import service as codec
from exchange.core.ids import check_message_id
from exchange.office.node import OfficeNode
from exchange.runtime.grpcutil import Access, grpc_errors, grpc_stream_errors, peer_of

__all__ = ["SERVICE_NAME", "ExchangeServicer", "agency_access"]

SERVICE_NAME = exchange_pb2.DESCRIPTOR.services_by_name["ExchangeService"].full_name
Ctx = grpc.aio.ServicerContext[Any, Any]


def agency_access(clients: tuple[str, ...]) -> Access:
    """Agency client certificates this office serves (any client certificate if none are named)."""
    return Access(default=frozenset(f"client:{c}" for c in clients) or frozenset({"client:*"}))


class ExchangeServicer(exchange_pb2_grpc.ExchangeServiceServicer):
    def __init__(self, node: OfficeNode, access: Access | None = None) -> None:
        self.node = node
        self.access = access

    async def _send(self, request: codec.SendPb, context: Ctx) -> exchange_pb2.SendResponse:
        peer = peer_of(context)
        result = await self.node.send(codec.send_request_from_pb(request), agency=str(peer) if peer else "")
        return codec.send_result_to_pb(result)

    @grpc_errors
    async def SendAlert(
        self, request: exchange_pb2.SendAlertRequest, context: Ctx
    ) -> exchange_pb2.SendResponse:
        return await self._send(request, context)

    @grpc_errors
    async def SendCaseMessage(
        self, request: exchange_pb2.SendCaseMessageRequest, context: Ctx
    ) -> exchange_pb2.SendResponse:
        return await self._send(request, context)

    @grpc_errors
    async def SendConsularRequest(
        self, request: exchange_pb2.SendConsularRequestRequest, context: Ctx
    ) -> exchange_pb2.SendResponse:
        return await self._send(request, context)

    @grpc_stream_errors
    async def Subscribe(
        self, request: exchange_pb2.SubscribeRequest, context: Ctx
    ) -> AsyncIterator[exchange_pb2.Delivery]:
        async for delivery in self.node.subscribe(request.after_cursor, request.include_read):
            yield codec.delivery_to_pb(delivery)

    @grpc_errors
    async def Acknowledge(
        self, request: exchange_pb2.AcknowledgeRequest, context: Ctx
    ) -> exchange_pb2.AcknowledgeResponse:
        read = await self.node.acknowledge(check_message_id(request.message_id))
        return codec.acknowledge_to_pb(read)

    @grpc_errors
    async def GetStatus(
        self, request: exchange_pb2.GetStatusRequest, context: Ctx
    ) -> exchange_pb2.GetStatusResponse:
        return codec.status_to_pb(await self.node.status(check_message_id(request.message_id)))

    @grpc_errors
    async def ListOffices(
        self, request: exchange_pb2.ListOfficesRequest, context: Ctx
    ) -> exchange_pb2.ListOfficesResponse:
        return codec.offices_to_pb(self.node.offices())

    @grpc_errors
    async def GetCase(
        self, request: exchange_pb2.GetCaseRequest, context: Ctx
    ) -> exchange_pb2.GetCaseResponse:
        return codec.case_to_pb(request.case_id, await self.node.case(request.case_id))

    @grpc_errors
    async def UploadAttachment(
        self, request_iterator: AsyncIterator[exchange_pb2.UploadChunk], context: Ctx
    ) -> exchange_pb2.AttachmentRef:
        async def pieces() -> AsyncIterator[tuple[str, str, bytes]]:
            async for chunk in request_iterator:
                yield attach_codec.upload_piece(chunk)

        peer = peer_of(context)
        ref = await self.node.attachments.upload(pieces(), agency=str(peer) if peer else "")
        return attach_codec.ref_to_pb(ref)

    @grpc_stream_errors
    async def DownloadAttachment(
        self, request: exchange_pb2.DownloadAttachmentRequest, context: Ctx
    ) -> AsyncIterator[exchange_pb2.DownloadChunk]:
        message_id, index = attach_codec.download_request_from_pb(request)
        async for item in self.node.attachments.download(message_id, index):
            yield attach_codec.download_chunk_to_pb(item)
