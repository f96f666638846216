"""AuditService and DirectoryService: the gateway's gRPC API.

Operators read metadata, tree heads and proofs; authorities publish signed
directory updates. Thin servicers over the audit store and ``GatewayNode``:
``gateway.audit.codec`` reads every request and builds every response, so
this module builds and reads no protobuf message itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc

from exchange._pb.liaison.v1 import audit_pb2_grpc
from exchange.runtime.grpcutil import Access, grpc_errors, grpc_stream_errors
from gateway.audit import codec
from gateway.audit.codec import AUDIT_SERVICE, DIRECTORY_SERVICE
from gateway.node import GatewayNode

__all__ = [
    "AUDIT_ACCESS",
    "AUDIT_SERVICE",
    "DIRECTORY_ACCESS",
    "DIRECTORY_SERVICE",
    "AuditServicer",
    "DirectoryServicer",
]

TAIL_POLL_S = 0.5
DEFAULT_PAGE_SIZE = 100
Ctx = grpc.aio.ServicerContext[Any, Any]

# Roles by client certificate kind (checked on mutual-TLS servers).
AUDIT_ACCESS = Access(default=frozenset({"operator:*", "authority:*"}))
DIRECTORY_ACCESS = Access(
    rules={
        "GetDirectory": frozenset({"operator:*", "authority:*", "node:*", "client:*"}),
        "PublishDirectory": frozenset({"authority:*"}),
    }
)

# Requests and responses are typed by the generated base classes; only the codec reads them.


class AuditServicer(audit_pb2_grpc.AuditServiceServicer):
    def __init__(self, node: GatewayNode, access: Access | None = None) -> None:
        self.node = node
        self.store = node.store
        self.access = access

    def add_to_server(self, server: grpc.aio.Server) -> None:
        audit_pb2_grpc.add_AuditServiceServicer_to_server(self, server)

    @grpc_errors
    async def Query(self, request: Any, context: Ctx) -> Any:
        q = codec.query_request_from_pb(request)
        page = await asyncio.to_thread(
            self.store.query,
            q.filters,
            page_size=q.page_size or DEFAULT_PAGE_SIZE,
            page_token=q.page_token,
            oldest_first=q.oldest_first,
        )
        return codec.query_response_to_pb(page)

    @grpc_stream_errors
    async def Tail(self, request: Any, context: Ctx) -> AsyncIterator[Any]:
        index = codec.tail_request_from_pb(request)
        while True:
            size = await asyncio.to_thread(self.store.size)
            while index < size:
                yield codec.tail_response_to_pb(await asyncio.to_thread(self.store.entry, index))
                index += 1
            await asyncio.sleep(TAIL_POLL_S)

    @grpc_errors
    async def GetTreeHead(self, request: Any, context: Ctx) -> Any:
        signed = await asyncio.to_thread(self.node.tree_head, codec.tree_head_request_from_pb(request))
        return codec.tree_head_response_to_pb(signed)

    @grpc_errors
    async def GetInclusionProof(self, request: Any, context: Ctx) -> Any:
        index, asked = codec.inclusion_proof_request_from_pb(request)
        size = asked or await asyncio.to_thread(self.store.size)
        proof = await asyncio.to_thread(self.store.inclusion_proof, index, size)
        root = await asyncio.to_thread(self.store.root, size)
        return codec.inclusion_proof_response_to_pb(index, size, proof, root)

    @grpc_errors
    async def GetConsistencyProof(self, request: Any, context: Ctx) -> Any:
        m, n = codec.consistency_proof_request_from_pb(request)
        proof = await asyncio.to_thread(self.store.consistency_proof, m, n)
        return codec.consistency_proof_response_to_pb(proof)

    @grpc_errors
    async def Stats(self, request: Any, context: Ctx) -> Any:
        from_ms, to_ms = codec.stats_request_from_pb(request)
        rows = await asyncio.to_thread(self.store.stats, from_ms, to_ms)
        return codec.stats_to_pb(rows)

    @grpc_errors
    async def AddCosignature(self, request: Any, context: Ctx) -> Any:
        size, cosignature = codec.add_cosignature_request_from_pb(request)
        await asyncio.to_thread(self.node.add_cosignature, size, cosignature)
        return codec.add_cosignature_response_to_pb()


class DirectoryServicer(audit_pb2_grpc.DirectoryServiceServicer):
    def __init__(self, node: GatewayNode, access: Access | None = None) -> None:
        self.node = node
        self.access = access

    def add_to_server(self, server: grpc.aio.Server) -> None:
        audit_pb2_grpc.add_DirectoryServiceServicer_to_server(self, server)

    @grpc_errors
    async def GetDirectory(self, request: Any, context: Ctx) -> Any:
        return codec.directory_response_to_pb(self.node.signed_directory())

    @grpc_errors
    async def PublishDirectory(self, request: Any, context: Ctx) -> Any:
        version = await self.node.publish_directory(codec.publish_directory_request_from_pb(request))
        return codec.publish_directory_response_to_pb(version)
