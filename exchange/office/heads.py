"""The tree heads an office was shown, and the alarm when two of them disagree (ADR 0013).

Every log proof that reaches the office (on mail routed to it, on the STAMPED
receipt of mail it sent) carries a tree head of its gateway's log, already
verified by ``receipts.check_stamp`` / ``ProvesInclusion``. ``HeadBook.observe``
keeps the first head of each size in the office's SQLite store and checks the
new one against what the office holds: the same size must have the same root,
and the head the gateway says it showed this office before must be consistent
with the new one (``logproof.check_link``). A link to a head the office has not
seen yet (frames of two commits handled out of order) waits until that head
arrives; one still waiting when ``PENDING_LINKS`` newer ones queue behind it is
counted ``unlinked``.
A failure is an alarm: a log line, ``liaison_office_log_alarms_total`` and
``alarms`` here (the node keeps delivering: the message itself is proven in
the head it came with; the alarm is about the log). What it does not do:
verify signatures or inclusion (the pure core does, before this is called).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import Final

import structlog

from exchange.core.clock import Clock
from exchange.core.logproof import ForkError, LogHead, LogProof, check_link
from exchange.office.metrics import OfficeMetrics
from exchange.office.store import OfficeStore

__all__ = ["HEAD_CACHE", "KEEP_HEADS", "PENDING_LINKS", "PRUNE_EVERY", "HeadBook"]

log = structlog.get_logger()

# Heads kept in memory (the store keeps them all); the copies of one commit share one.
HEAD_CACHE: Final = 1024
# Links waiting for the head they name (bounded: the oldest is given up and counted).
PENDING_LINKS: Final = 1024
# The store keeps the first head seen and the newest KEEP_HEADS per gateway (one per commit
# this office took part in: unbounded otherwise), pruned every PRUNE_EVERY new heads.
KEEP_HEADS: Final = 4096
PRUNE_EVERY: Final = 512


class HeadBook:
    """The heads one office has seen, per gateway, and the fork alarm."""

    def __init__(self, store: OfficeStore, metrics: OfficeMetrics, clock: Clock) -> None:
        self._store = store
        self._metrics = metrics
        self._clock = clock
        self._cache: OrderedDict[tuple[str, int], bytes] = OrderedDict()  # (gateway, size) -> root
        # (gateway, size of the head not seen yet) -> [(the head that links to it, its proof, message id)]
        self._pending: OrderedDict[tuple[str, int], list[tuple[LogHead, tuple[bytes, ...], str]]] = (
            OrderedDict()
        )
        self._new_heads = 0
        self.alarms = 0  # fork alarms raised by this process (health detail)
        self.last_alarm = ""

    async def _root(self, gateway: str, size: int) -> bytes | None:
        root = self._cache.get((gateway, size))
        if root is None:
            held = await asyncio.to_thread(self._store.log_head, gateway, size)
            if held is None:
                return None
            root = held[0]
            self._remember(gateway, size, root)
        return root

    def _remember(self, gateway: str, size: int, root: bytes) -> None:
        self._cache[(gateway, size)] = root
        self._cache.move_to_end((gateway, size))
        while len(self._cache) > HEAD_CACHE:
            self._cache.popitem(last=False)

    async def observe(self, proof: LogProof, *, message_id: str) -> None:
        """Check ``proof.head`` (verified) against the heads held, then keep it. Never raises ForkError.

        The plan: (1) a head of a size held already must have the same root;
        (2) the linked head, once held, is consistent with the new one; (3) keep the
        new head, and check the links that were waiting for it.
        """
        head = proof.head
        # (1): Stops: two histories of the same size shown to one office.
        held = await self._root(head.gateway, head.size)
        if held is not None:
            self._check(LogHead(head.size, held, 0, head.gateway, b"", ()), head, (), message_id)
            return  # seen before: nothing new to keep
        # (2): Stops: a later head that does not extend (or a rewrite of) the one shown before.
        if proof.linked_size:
            linked = await self._root(head.gateway, proof.linked_size)
            if linked is None:
                self._wait_for(proof.linked_size, head, proof.consistency, message_id)
            else:
                known = LogHead(proof.linked_size, linked, 0, head.gateway, b"", ())
                self._check(known, head, proof.consistency, message_id)
        # (3): remembered before the write, so that the concurrent handlers of one batch
        #     (whose heads link to this one) find it.
        self._remember(head.gateway, head.size, head.root)
        for newer, consistency, waiting in self._pending.pop((head.gateway, head.size), []):
            self._check(head, newer, consistency, waiting)
        await self._store.record_log_head(head.gateway, head.size, head.root, head.head_bytes, self._clock())
        self._new_heads += 1
        if self._new_heads % PRUNE_EVERY == 0:
            await self._store.prune_log_heads(head.gateway, KEEP_HEADS)

    def _wait_for(self, size: int, head: LogHead, consistency: tuple[bytes, ...], message_id: str) -> None:
        self._pending.setdefault((head.gateway, size), []).append((head, consistency, message_id))
        while len(self._pending) > PENDING_LINKS:
            (gateway, missing), links = self._pending.popitem(last=False)
            for newer, _, waiting in links:
                self._metrics.on_log_alarm("unlinked")  # metrics
                log.warning(
                    "log_head_unlinked",
                    gateway=gateway,
                    size=newer.size,
                    linked_size=missing,
                    message_id=waiting,
                )

    def _check(self, known: LogHead, new: LogHead, consistency: tuple[bytes, ...], message_id: str) -> None:
        try:
            check_link(known, new, consistency)
        except ForkError as e:
            self.alarms += 1
            self.last_alarm = str(e)
            self._metrics.on_log_alarm("fork")  # metrics
            log.warning("log_fork_detected", gateway=new.gateway, error=str(e), message_id=message_id)
