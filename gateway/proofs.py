"""The gateway's log proofs: one signed tree head per commit, a proof per routed copy (ADR 0013).

After each group commit the audit writer asks ``LogProver.prove_commit`` (in its
thread) for one Ed25519-signed tree head of the new size and an RFC 9162
inclusion proof of every record of the commit (one batched node read). ``proof_for`` then builds each
office's ``LogProof``: the record, the head, the inclusion proof, and a
consistency proof linking the head with the last head this gateway showed
that office, so the office itself can tell a fork or a rewrite of the log.

What it does not do: verify anything (offices do, ``exchange.core.logproof``),
or store these heads: they are facts about (size, root) that any stored head
of the same size must agree with, and the periodic heads that witnesses
co-sign stay as they are. The last head shown to each office is kept in
memory only: after a restart an office's first copy carries no link (ADR 0013).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from exchange.core.clock import Clock
from exchange.core.codec.envelope import decode_logged_claim
from exchange.core.identity import OfficeIdentity
from exchange.core.logproof import LogHead, LogProof
from exchange.core.model import Suite
from gateway.audit.codec import encode_tree_head
from gateway.audit.store import AuditStore
from gateway.audit.tree import inclusion_proofs
from gateway.audit.treehead import TreeHead, sign_tree_head

__all__ = ["CONSISTENCY_CACHE", "Committed", "LogHead", "LogProver", "Prover"]

# Consistency proofs kept for reuse (the copies of one commit to one office share one).
CONSISTENCY_CACHE = 256


@dataclass(frozen=True)
class Committed:
    """One record's place in the log, and the head of the commit that wrote it (with its proof)."""

    index: int
    entry: bytes
    head: LogHead | None = None
    inclusion: tuple[bytes, ...] = ()


Prover = Callable[[Sequence[int]], tuple[LogHead, list[tuple[bytes, ...]]]]


class LogProver:
    """Signs commit heads and builds per-office log proofs against one audit store."""

    def __init__(self, store: AuditStore, gateway: str, identity: OfficeIdentity, clock: Clock) -> None:
        self._store = store
        self._gateway = gateway
        self._identity = identity
        self._clock = clock
        self._lock = threading.Lock()  # the writer's thread and resumes sign heads
        self._last_head: LogHead | None = None
        self._shown: dict[str, LogHead] = {}
        self._consistency: dict[tuple[int, int], tuple[bytes, ...]] = {}

    def prove_commit(self, indices: Sequence[int]) -> tuple[LogHead, list[tuple[bytes, ...]]]:
        """After a commit: one signed head of the log's size, one inclusion proof per record."""
        head = self._head(self._store.size())
        return head, [tuple(p) for p in inclusion_proofs(indices, head.size, self._store)]

    def prove_again(self, index: int) -> Committed:
        """The proof of a record audited earlier (a frame resumed after a restart)."""
        head = self._last_head
        if head is None or head.size <= index:
            head = self._head(self._store.size())
        entry = self._store.entry(index).entry
        return Committed(index, entry, head, tuple(self._store.inclusion_proof(index, head.size)))

    def _head(self, size: int) -> LogHead:
        """A tree head of ``size``, Ed25519-signed like the stamps it backs (one signature per commit)."""
        with self._lock:
            last = self._last_head
            if last is not None and last.size == size:
                return last
            tree_head = TreeHead(
                size=size, root=self._store.root(size), timestamp_ms=self._clock(), gateway=self._gateway
            )
            head_bytes = encode_tree_head(tree_head)
            signatures = sign_tree_head(tree_head, head_bytes, self._identity.signing_keys(Suite.CLASSIC))
            head = LogHead(
                size, tree_head.root, tree_head.timestamp_ms, self._gateway, head_bytes, signatures
            )
            if last is None or last.size < size:
                self._last_head = head
            return head

    def proof_for(self, office: str, committed: Committed) -> LogProof:
        """``office``'s copy of the proof, linked to the last head that office was shown."""
        head = committed.head
        assert head is not None  # the writer proves every commit; resumes are proven afresh
        shown = self._shown.get(office)
        linked, consistency = 0, tuple[bytes, ...]()
        if shown is not None and shown.size != head.size:
            linked = shown.size
            consistency = self._consistency_proof(min(linked, head.size), max(linked, head.size))
        if shown is None or shown.size < head.size:
            self._shown[office] = head
        return LogProof(
            record=committed.entry,
            claim=decode_logged_claim(committed.entry),
            leaf_index=committed.index,
            head=head,
            inclusion=committed.inclusion,
            linked_size=linked,
            consistency=consistency,
        )

    def _consistency_proof(self, m: int, n: int) -> tuple[bytes, ...]:
        cached = self._consistency.get((m, n))
        if cached is None:
            cached = tuple(self._store.consistency_proof(m, n)) if m else ()
            if len(self._consistency) >= CONSISTENCY_CACHE:
                self._consistency.clear()
            self._consistency[(m, n)] = cached
        return cached
