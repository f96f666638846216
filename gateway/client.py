"""Client for the gateway's AuditService and DirectoryService (operators, authorities, witnesses).

Synchronous gRPC; takes and returns domain values (``AuditFilter``, audit
records with the exact leaf bytes, signed tree heads, proofs as lists of
hashes): ``gateway.audit.codec`` builds and reads every message. Every gRPC
failure becomes ``RemoteError``; a missing record or tree head becomes
``NotFoundError``; an answer (or a signed directory to publish) that does not
parse becomes ``CodecError``. It checks nothing itself: verification is the
caller's (``gateway.audit.verify``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self, TypeVar

import grpc

from exchange._pb.liaison.v1 import audit_pb2_grpc
from exchange.client.connection import ClientTls, channel, lab_gateway
from exchange.client.sdk import remote_error
from exchange.core.errors import NotFoundError, RemoteError
from gateway.audit import codec
from gateway.audit.query import AuditFilter, StatsRow
from gateway.audit.record import AuditRecord
from gateway.audit.treehead import Cosignature, SignedTreeHead

# AuditFilter is re-exported: it is what ``query`` and ``all_records`` take.
__all__ = ["AuditClient", "AuditFilter", "LoggedRecord"]

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
        req = codec.tree_head_request_to_pb(size)
        return codec.tree_head_response_from_pb(
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
        call = self._audit.Tail(codec.tail_request_to_pb(index), timeout=self.timeout)
        try:
            pb = next(iter(call))
        except grpc.RpcError as e:
            raise remote_error(e) from None
        except StopIteration:
            raise NotFoundError(f"no audit record at index {index}") from None
        finally:
            call.cancel()
        logged = LoggedRecord(*codec.tail_response_from_pb(pb))
        if logged.index != index:
            raise NotFoundError(f"gateway answered record {logged.index} for index {index}")
        return logged

    def tail(self, from_index: int = 0, *, idle_s: float | None = None) -> Iterator[LoggedRecord]:
        """Records from ``from_index`` on, live as they are appended (AuditService.Tail).

        Ends after ``idle_s`` seconds without a new record (never, when None).
        Time spent by the caller between records does not count as idle.
        """
        call = self._audit.Tail(codec.tail_request_to_pb(from_index))
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
                yield LoggedRecord(*codec.tail_response_from_pb(pb))
                arm()
        except grpc.RpcError as e:
            if not expired.is_set():
                raise remote_error(e) from None
        finally:
            disarm()
            call.cancel()

    def stats(self, from_ms: int = 0, to_ms: int = 0) -> list[StatsRow]:
        req = codec.stats_request_to_pb(from_ms, to_ms)
        return codec.stats_from_pb(self._call(lambda: self._audit.Stats(req, timeout=self.timeout)))

    def add_cosignature(self, size: int, cosignature: Cosignature) -> None:
        req = codec.add_cosignature_request_to_pb(size, cosignature)
        self._call(lambda: self._audit.AddCosignature(req, timeout=self.timeout))

    def query(
        self,
        filters: AuditFilter | None = None,
        *,
        page_size: int = 0,
        page_token: str = "",
        oldest_first: bool = False,
    ) -> tuple[list[LoggedRecord], str]:
        """One page of records matching ``filters`` (newest first unless ``oldest_first``), and the
        next page's token ("" after the last page). ``page_size`` 0 is the gateway's default."""
        req = codec.query_request_to_pb(
            filters, page_size=page_size, page_token=page_token, oldest_first=oldest_first
        )
        records, token = codec.query_response_from_pb(
            self._call(lambda: self._audit.Query(req, timeout=self.timeout))
        )
        return [LoggedRecord(*r) for r in records], token

    def all_records(self, filters: AuditFilter | None = None) -> Iterator[LoggedRecord]:
        """Every record matching ``filters``, oldest first, page by page."""
        token = ""
        while True:
            records, token = self.query(filters, page_size=500, oldest_first=True, page_token=token)
            yield from records
            if not token:
                return

    def inclusion_proof(self, index: int, size: int) -> tuple[list[bytes], bytes]:
        req = codec.inclusion_proof_request_to_pb(index, size)
        return codec.inclusion_proof_response_from_pb(
            self._call(lambda: self._audit.GetInclusionProof(req, timeout=self.timeout))
        )

    def consistency_proof(self, m: int, n: int) -> list[bytes]:
        req = codec.consistency_proof_request_to_pb(m, n)
        return codec.consistency_proof_response_from_pb(
            self._call(lambda: self._audit.GetConsistencyProof(req, timeout=self.timeout))
        )

    def directory(self) -> bytes:
        """The gateway's current signed directory, as bytes."""
        req = codec.directory_request_to_pb()
        return codec.directory_response_from_pb(
            self._call(lambda: self._directory.GetDirectory(req, timeout=self.timeout))
        )

    def publish_directory(self, signed: bytes) -> int:
        """Publish a signed directory update; the version adopted. ``CodecError`` (before anything
        is sent) when ``signed`` is not a signed directory's bytes."""
        req = codec.publish_directory_request_to_pb(signed)
        return codec.publish_directory_response_from_pb(
            self._call(lambda: self._directory.PublishDirectory(req, timeout=self.timeout))
        )
