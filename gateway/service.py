"""AuditService and DirectoryService: the gateway's gRPC API.

Operators read metadata, tree heads and proofs; authorities publish signed
directory updates. Thin servicers over the audit store and ``GatewayNode``.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import grpc

from exchange._pb.liaison.v1 import audit_pb2, audit_pb2_grpc, directory_pb2
from exchange.core.errors import CodecError
from exchange.core.model import Kind, Priority, Reason
from exchange.runtime.grpcutil import Access, grpc_errors, grpc_stream_errors
from gateway.audit.codec import (
    cosignature_from_pb,
    decode_record,
    record_to_pb,
    signed_tree_head_to_pb,
    stats_to_pb,
)
from gateway.audit.query import AuditFilter, StoredEntry
from gateway.audit.record import Verdict
from gateway.node import GatewayNode

__all__ = [
    "AUDIT_ACCESS",
    "AUDIT_SERVICE",
    "DIRECTORY_ACCESS",
    "DIRECTORY_SERVICE",
    "AuditServicer",
    "DirectoryServicer",
]

AUDIT_SERVICE = audit_pb2.DESCRIPTOR.services_by_name["AuditService"].full_name
DIRECTORY_SERVICE = audit_pb2.DESCRIPTOR.services_by_name["DirectoryService"].full_name
TAIL_POLL_S = 0.5
Ctx = grpc.aio.ServicerContext[Any, Any]
E = TypeVar("E", bound=enum.IntEnum)


def _enum(enum_cls: type[E], value: int) -> E | None:
    """A filter value from its wire number (0 = any); the store matches enums by label."""
    if not value:
        return None
    try:
        return enum_cls(value)
    except ValueError:
        raise CodecError(f"unknown {enum_cls.__name__} {value}") from None


def _filter(r: audit_pb2.QueryRequest) -> AuditFilter:
    return AuditFilter(
        since_ms=r.from_ms or None,
        until_ms=r.to_ms or None,
        verdict=_enum(Verdict, r.verdict),
        reason=_enum(Reason, r.reason),
        message_id=r.message_id or None,
        sender=r.sender or None,
        recipient=r.recipient or None,
        kind=_enum(Kind, r.kind),
        priority=_enum(Priority, r.priority),
        case_id=r.case_id or None,
    )


def _logged(stored: StoredEntry) -> audit_pb2.LoggedRecord:
    return audit_pb2.LoggedRecord(
        index=stored.index, entry=stored.entry, record=record_to_pb(decode_record(stored.entry))
    )


# Roles by client certificate kind (checked on mutual-TLS servers).
AUDIT_ACCESS = Access(default=frozenset({"operator:*", "authority:*"}))
DIRECTORY_ACCESS = Access(
    rules={
        "GetDirectory": frozenset({"operator:*", "authority:*", "node:*", "client:*"}),
        "PublishDirectory": frozenset({"authority:*"}),
    }
)


class AuditServicer(audit_pb2_grpc.AuditServiceServicer):
    def __init__(self, node: GatewayNode, access: Access | None = None) -> None:
        self.node = node
        self.store = node.store
        self.access = access

    @grpc_errors
    async def Query(self, request: audit_pb2.QueryRequest, context: Ctx) -> audit_pb2.QueryResponse:
        page = await asyncio.to_thread(
            self.store.query,
            _filter(request),
            page_size=request.page_size or 100,
            page_token=request.page_token or None,
            oldest_first=request.oldest_first,
        )
        return audit_pb2.QueryResponse(
            records=[_logged(r) for r in page.records], next_page_token=page.next_page_token or ""
        )

    @grpc_stream_errors
    async def Tail(
        self, request: audit_pb2.TailRequest, context: Ctx
    ) -> AsyncIterator[audit_pb2.LoggedRecord]:
        index = request.from_index
        while True:
            size = await asyncio.to_thread(self.store.size)
            while index < size:
                yield _logged(await asyncio.to_thread(self.store.entry, index))
                index += 1
            await asyncio.sleep(TAIL_POLL_S)

    @grpc_errors
    async def GetTreeHead(
        self, request: audit_pb2.GetTreeHeadRequest, context: Ctx
    ) -> audit_pb2.SignedTreeHead:
        signed = await asyncio.to_thread(self.node.tree_head, request.tree_size)
        return signed_tree_head_to_pb(signed)

    @grpc_errors
    async def GetInclusionProof(
        self, request: audit_pb2.InclusionProofRequest, context: Ctx
    ) -> audit_pb2.InclusionProofResponse:
        size = request.tree_size or await asyncio.to_thread(self.store.size)
        proof = await asyncio.to_thread(self.store.inclusion_proof, request.index, size)
        root = await asyncio.to_thread(self.store.root, size)
        return audit_pb2.InclusionProofResponse(index=request.index, tree_size=size, proof=proof, root=root)

    @grpc_errors
    async def GetConsistencyProof(
        self, request: audit_pb2.ConsistencyProofRequest, context: Ctx
    ) -> audit_pb2.ConsistencyProofResponse:
        proof = await asyncio.to_thread(self.store.consistency_proof, request.from_size, request.to_size)
        return audit_pb2.ConsistencyProofResponse(proof=proof)

    @grpc_errors
    async def Stats(self, request: audit_pb2.StatsRequest, context: Ctx) -> audit_pb2.StatsResponse:
        rows = await asyncio.to_thread(self.store.stats, request.from_ms or None, request.to_ms or None)
        return stats_to_pb(rows)

    @grpc_errors
    async def AddCosignature(
        self, request: audit_pb2.AddCosignatureRequest, context: Ctx
    ) -> audit_pb2.AddCosignatureResponse:
        await asyncio.to_thread(
            self.node.add_cosignature, request.tree_size, cosignature_from_pb(request.cosignature)
        )
        return audit_pb2.AddCosignatureResponse()


class DirectoryServicer(audit_pb2_grpc.DirectoryServiceServicer):
    def __init__(self, node: GatewayNode, access: Access | None = None) -> None:
        self.node = node
        self.access = access

    @grpc_errors
    async def GetDirectory(
        self, request: audit_pb2.GetDirectoryRequest, context: Ctx
    ) -> directory_pb2.SignedDirectory:
        return directory_pb2.SignedDirectory.FromString(self.node.signed_directory())

    @grpc_errors
    async def PublishDirectory(
        self, request: directory_pb2.SignedDirectory, context: Ctx
    ) -> audit_pb2.PublishDirectoryResponse:
        version = await self.node.publish_directory(request.SerializeToString())
        return audit_pb2.PublishDirectoryResponse(version=version)
