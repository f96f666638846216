"""One record the audit store cannot take fails only itself; no frame is retried for ever.

The gateway's group commit (``GatewayNode._writer``) on a real SQLite audit
store, and the gateway's per-frame handling (``GatewayNode.handle_batch``,
what the consumer of each office's out subject calls) with frames built by hand.
"""

from __future__ import annotations

import asyncio

import pytest

from exchange.core.model import Reason
from exchange.core.wire import out_subject
from exchange.nats.transport import Delivered
from gateway.audit.codec import decode_record
from gateway.audit.query import AuditFilter
from gateway.audit.record import AuditRecord, Verdict
from gateway.audit.sqlite import SQLiteAuditStore
from gateway.node import POISON_ATTEMPTS, GatewayNode

NOW = 1_760_000_000_000
OFFICE = "ru-mvd-dushanbe"


def _record(case_id: str) -> AuditRecord:
    return AuditRecord(NOW, Verdict.ACCEPTED, OFFICE, case_id=case_id)


async def _with_writer(node: GatewayNode, *records: AuditRecord) -> list[int | BaseException]:
    task = asyncio.create_task(node._writer.run())
    try:
        # One batch: every append is queued before the writer wakes.
        results = await asyncio.gather(*(node._writer.append(r) for r in records), return_exceptions=True)
    finally:
        task.cancel()
    return [r if isinstance(r, BaseException) else r.index for r in results]


def test_one_refused_record_fails_only_itself(node: GatewayNode, store: SQLiteAuditStore) -> None:
    """A group commit with one record the store refuses (a 5000-character case id column).

    Failed before the fix: all three appends failed with the store's MetadataError
    (one refused record failed the whole group commit it landed in).
    """
    results = asyncio.run(_with_writer(node, _record("ok-1"), _record("c" * 5000), _record("ok-2")))
    assert results[0] == 0
    assert results[2] == 1
    assert isinstance(results[1], Exception)
    assert "refused" in str(results[1])
    assert [decode_record(store.entry(i).entry).case_id for i in range(store.size())] == ["ok-1", "ok-2"]
    node.check_store_writes()  # the store is healthy: health stays SERVING


def _frame(seq: int) -> Delivered:
    return Delivered(b"\x00poison", out_subject(OFFICE), {}, seq, 1)


def test_a_frame_that_keeps_failing_is_parked_with_an_audit_record(
    node: GatewayNode, store: SQLiteAuditStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A frame whose own handling raises every time ends as a dead-letter audit record.

    Failed before the fix: every attempt returned the error (nak, redelivered with
    ``max_deliver=-1``): the frame came back for ever and nothing was audited.
    """

    async def broken(item: Delivered) -> None:
        raise RuntimeError("a bug this frame's bytes trigger")

    monkeypatch.setattr(node, "handle", broken)

    async def go() -> list[list[BaseException | None]]:
        task = asyncio.create_task(node._writer.run())
        try:
            return [await node.handle_batch([_frame(7)]) for _ in range(POISON_ATTEMPTS + 1)]
        finally:
            task.cancel()

    outcomes = asyncio.run(go())
    assert all(isinstance(o[0], RuntimeError) for o in outcomes[:POISON_ATTEMPTS])
    assert outcomes[POISON_ATTEMPTS] == [None]  # acknowledged: not delivered again
    [entry] = store.query(AuditFilter(verdict=Verdict.REJECTED)).records
    record = decode_record(entry.entry)
    assert (record.sender, record.reason, record.source_seq) == (OFFICE, Reason.MALFORMED, 7)
    assert f"parked after {POISON_ATTEMPTS} failed attempts (RuntimeError)" in record.detail
