"""The gateway's group commit: records from concurrent handlers appended in one transaction.

One record the store cannot take fails only itself: when a group commit
fails, its records are appended again one by one (in order), so the others
get their index and the one refused gets :class:`RecordRefusedError`, which
the gateway turns into an audited rejection of its frame. When every record
of the group fails alone too, the store itself is failing (disk full,
database gone): every waiter gets the store's error, nothing is acknowledged,
the frames stay in JetStream and health reports NOT_SERVING until an append
succeeds again.

After each commit the writer calls its prover (``gateway.proofs``) on the
indices it stored, in the same worker thread: one signed tree head for the
commit and an inclusion proof per record, handed back in ``Committed``.

What it does not do: decide anything about a frame, or retry: the frames
come back from JetStream.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import structlog

from exchange.core.errors import LiaisonError
from gateway.audit.codec import encode_record
from gateway.audit.errors import MetadataError
from gateway.audit.record import AuditRecord
from gateway.audit.store import AuditStore
from gateway.metrics import GatewayMetrics
from gateway.proofs import Committed, LogHead, Prover

__all__ = ["AuditWriter", "RecordRefusedError"]

log = structlog.get_logger()

_Entry = tuple[bytes, dict[str, object]]


class RecordRefusedError(LiaisonError):
    """The store refused this one record while it took others: the record, not the store, is bad."""


class AuditWriter:
    """Collects records from concurrent handlers and appends them in one transaction."""

    def __init__(
        self, store: AuditStore, metrics: GatewayMetrics | None = None, prove: Prover | None = None
    ) -> None:
        self._store = store
        self._metrics = metrics  # metrics
        self._prove = prove  # signs the commit's tree head and proves each record into it
        self._pending: list[tuple[AuditRecord, asyncio.Future[Committed]]] = []
        self.failure: str | None = None  # the last append's error, until an append succeeds
        self._wake = asyncio.Event()

    async def append(self, record: AuditRecord) -> Committed:
        fut: asyncio.Future[Committed] = asyncio.get_running_loop().create_future()
        self._pending.append((record, fut))
        self._wake.set()
        return await fut

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, []
            if not batch:
                continue
            futures = [fut for _, fut in batch]
            entries = [_entry(r) for r, _ in batch]
            try:
                indices: Sequence[int | BaseException] = await asyncio.to_thread(self._store.append, entries)
            except Exception as e:  # noqa: BLE001 - find the record at fault, or give every waiter the error
                indices = await asyncio.to_thread(self._one_by_one, [r for r, _ in batch], e)
            stored = sum(1 for i in indices if isinstance(i, int))
            try:
                head, proofs = await asyncio.to_thread(self._proofs, indices)
            except Exception as e:  # noqa: BLE001 - stored but unproven: the frames come back and resume
                log.warning("audit_proof_failed", error=str(e)[:300])
                for fut in futures:
                    if not fut.done():
                        fut.set_exception(e)
                continue
            if stored:
                if self._metrics is not None:  # metrics: records per successful commit
                    self._metrics.on_commit(stored)
                if self.failure is not None:
                    log.info("audit_store_recovered")
                    self.failure = None
            for fut, outcome, (entry, _) in zip(futures, indices, entries, strict=True):
                if fut.done():
                    continue
                if isinstance(outcome, int):
                    fut.set_result(Committed(outcome, entry, head, proofs.get(outcome, ())))
                else:
                    fut.set_exception(outcome)

    def _proofs(
        self, outcomes: Sequence[int | BaseException]
    ) -> tuple[LogHead | None, dict[int, tuple[bytes, ...]]]:
        stored = [i for i in outcomes if isinstance(i, int)]
        if self._prove is None or not stored:
            return None, {}
        head, proofs = self._prove(stored)
        return head, dict(zip(stored, proofs, strict=True))

    def _one_by_one(self, records: list[AuditRecord], group_error: Exception) -> list[int | BaseException]:
        """Append each record of a failed group alone; name the records the store refused.

        A record refused by the store's own checks (MetadataError, before any SQL) is at
        fault whatever else happens; an engine error (a NUL byte in PostgreSQL's COPY, a
        disk full) is the record's fault only when other records of the group went in.
        """
        outcomes: list[int | BaseException] = []
        engine_errors = 0
        for record in records:
            try:
                outcomes.append(self._store.append([_entry(record)])[0])
            except MetadataError as e:
                outcomes.append(_refused(e))
            except Exception as e:  # noqa: BLE001 - the store's or the record's: sorted out below
                outcomes.append(e)
                engine_errors += 1
        if engine_errors and not any(isinstance(o, int) for o in outcomes):
            # Nothing went in: the store is failing. JetStream brings the frames back.
            if self.failure is None:
                log.warning("audit_store_failed", error=str(group_error)[:300])
            self.failure = str(group_error)[:300]
            return outcomes
        return [
            _refused(o) if isinstance(o, Exception) and not isinstance(o, RecordRefusedError) else o
            for o in outcomes
        ]

    @property
    def pending(self) -> int:  # metrics: records waiting for the next commit
        return len(self._pending)


def _refused(error: Exception) -> RecordRefusedError:
    log.warning("audit_record_refused", error_type=type(error).__name__, error=str(error)[:300])
    return RecordRefusedError(f"the audit store refused the record: {str(error)[:200]}")


def _entry(record: AuditRecord) -> _Entry:
    return encode_record(record), record.index_columns()
