"""Client for the gateway's AuditService and DirectoryService (operators, authorities, witnesses).

Synchronous gRPC; returns domain values (audit records with the exact leaf
bytes, signed tree heads, proofs as lists of hashes). Every gRPC failure
becomes ``RemoteError``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self, TypeVar

import grpc

from exchange._pb.liaison.v1 import audit_pb2, audit_pb2_grpc, directory_pb2
from exchange.client import ClientTls, remote_error
from exchange.codec.audit import cosignature_to_pb, decode_record, signed_tree_head_from_pb, stats_from_pb
from gateway.audit.record import AuditRecord
from gateway.audit.store import StatsRow
from gateway.audit.treehead import Cosignature, SignedTreeHead

__all__ = ["AuditClient", "LoggedRecord"]

T = TypeVar("T")


@dataclass(frozen=True)
class LoggedRecord:
    index: int
    entry: bytes  # the exact leaf input
    record: AuditRecord


class AuditClient:
    def __init__(self, target: str, *, tls: ClientTls | None = None, timeout: float = 15.0) -> None:
        if tls is None:
            self._channel = grpc.insecure_channel(target)
        else:
            creds = grpc.ssl_channel_credentials(
                tls.ca.read_bytes(), tls.key.read_bytes(), tls.cert.read_bytes()
            )
            self._channel = grpc.secure_channel(target, creds)
        self._audit = audit_pb2_grpc.AuditServiceStub(self._channel)
        self._directory = audit_pb2_grpc.DirectoryServiceStub(self._channel)
        self.timeout = timeout

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _call(self, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except grpc.RpcError as e:
            raise remote_error(e) from None

    def tree_head(self, size: int = 0) -> SignedTreeHead:
        """The signed head of ``size`` (0 = current), with the witnesses' co-signatures."""
        req = audit_pb2.GetTreeHeadRequest(tree_size=size)
        return signed_tree_head_from_pb(
            self._call(lambda: self._audit.GetTreeHead(req, timeout=self.timeout))
        )

    def stats(self, from_ms: int = 0, to_ms: int = 0) -> list[StatsRow]:
        req = audit_pb2.StatsRequest(from_ms=from_ms, to_ms=to_ms)
        return stats_from_pb(self._call(lambda: self._audit.Stats(req, timeout=self.timeout)))

    def add_cosignature(self, size: int, cosignature: Cosignature) -> None:
        req = audit_pb2.AddCosignatureRequest(tree_size=size, cosignature=cosignature_to_pb(cosignature))
        self._call(lambda: self._audit.AddCosignature(req, timeout=self.timeout))

    def query(
        self, request: audit_pb2.QueryRequest | None = None, **filters: object
    ) -> tuple[list[LoggedRecord], str]:
        req = request or audit_pb2.QueryRequest(**filters)  # type: ignore[arg-type]
        pb = self._call(lambda: self._audit.Query(req, timeout=self.timeout))
        return [
            LoggedRecord(r.index, r.entry, decode_record(r.entry)) for r in pb.records
        ], pb.next_page_token

    def all_records(self, **filters: Any) -> Iterator[LoggedRecord]:
        token = ""
        while True:
            records, token = self.query(page_size=500, oldest_first=True, page_token=token, **filters)
            yield from records
            if not token:
                return

    def inclusion_proof(self, index: int, size: int) -> tuple[list[bytes], bytes]:
        req = audit_pb2.InclusionProofRequest(index=index, tree_size=size)
        pb = self._call(lambda: self._audit.GetInclusionProof(req, timeout=self.timeout))
        return list(pb.proof), pb.root

    def consistency_proof(self, m: int, n: int) -> list[bytes]:
        req = audit_pb2.ConsistencyProofRequest(from_size=m, to_size=n)
        pb = self._call(lambda: self._audit.GetConsistencyProof(req, timeout=self.timeout))
        return list(pb.proof)

    def directory(self) -> bytes:
        pb = self._call(
            lambda: self._directory.GetDirectory(audit_pb2.GetDirectoryRequest(), timeout=self.timeout)
        )
        return pb.SerializeToString()

    def publish_directory(self, signed: bytes) -> int:
        req = directory_pb2.SignedDirectory.FromString(signed)
        return self._call(lambda: self._directory.PublishDirectory(req, timeout=self.timeout)).version
