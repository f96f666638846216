"""Client for the gateway's AuditService and DirectoryService (operators, authorities, witnesses).

Synchronous gRPC; returns domain values (audit records with the exact leaf
bytes, signed tree heads, proofs as lists of hashes). Every gRPC failure
becomes ``RemoteError``; a missing record or tree head becomes ``NotFoundError``.
It checks nothing itself: verification is the caller's (``gateway.audit.verify``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import grpc

from exchange._pb.liaison.v1 import audit_pb2, audit_pb2_grpc, directory_pb2
from exchange.client.connection import ClientTls, channel, lab_gateway
from exchange.client.sdk import remote_error
from exchange.core.errors import NotFoundError, RemoteError
from gateway.audit.codec import cosignature_to_pb, decode_record, signed_tree_head_from_pb, stats_from_pb
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
        self._channel = channel(target, tls)
        self._audit = audit_pb2_grpc.AuditServiceStub(self._channel)
        self._directory = audit_pb2_grpc.DirectoryServiceStub(self._channel)
        self.timeout = timeout

    @classmethod
    def from_lab(cls, lab_dir: Path | str, *, timeout: float = 15.0) -> AuditClient:
        """The gateway of a running lab, as its operator (lab.json: gateway.grpc, operator_tls)."""
        target, tls = lab_gateway(lab_dir)
        return cls(target, tls=tls, timeout=timeout)

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

    def find_tree_head(self, size: int) -> SignedTreeHead | None:
        """The stored signed head of exactly ``size`` (with co-signatures), or None when none was signed."""
        try:
            return self.tree_head(size)
        except RemoteError as e:
            if e.status == grpc.StatusCode.NOT_FOUND.name:
                return None
            raise

    def size(self) -> int:
        """How many records the log holds now (the newest index + 1), without signing a head."""
        records, _ = self.query(page_size=1)
        return records[0].index + 1 if records else 0

    def record(self, index: int) -> LoggedRecord:
        """The record at ``index`` (exact leaf bytes); ``NotFoundError`` beyond the log's end."""
        size = self.size()
        if not 0 <= index < size:
            raise NotFoundError(f"no audit record at index {index} (the log has {size} records)")
        call = self._audit.Tail(audit_pb2.TailRequest(from_index=index), timeout=self.timeout)
        try:
            pb = next(iter(call))
        except grpc.RpcError as e:
            raise remote_error(e) from None
        except StopIteration:
            raise NotFoundError(f"no audit record at index {index}") from None
        finally:
            call.cancel()
        if pb.index != index:
            raise NotFoundError(f"gateway answered record {pb.index} for index {index}")
        return LoggedRecord(pb.index, pb.entry, decode_record(pb.entry))

    def tail(self, from_index: int = 0, *, idle_s: float | None = None) -> Iterator[LoggedRecord]:
        """Records from ``from_index`` on, live as they are appended (AuditService.Tail).

        Ends after ``idle_s`` seconds without a new record (never, when None).
        Time spent by the caller between records does not count as idle.
        """
        call = self._audit.Tail(audit_pb2.TailRequest(from_index=from_index))
        expired = threading.Event()
        timer: threading.Timer | None = None

        def expire() -> None:
            expired.set()
            call.cancel()

        def arm() -> None:
            nonlocal timer
            if idle_s is not None:
                timer = threading.Timer(idle_s, expire)
                timer.daemon = True
                timer.start()

        def disarm() -> None:
            if timer is not None:
                timer.cancel()

        try:
            arm()
            for pb in call:
                disarm()
                yield LoggedRecord(pb.index, pb.entry, decode_record(pb.entry))
                arm()
        except grpc.RpcError as e:
            if not expired.is_set():
                raise remote_error(e) from None
        finally:
            disarm()
            call.cancel()

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
