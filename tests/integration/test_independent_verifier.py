"""Proofs served by a running gateway, checked by the test-only RFC 9162 verifier.

A lab of real processes logs real traffic in a few batches; a signed tree
head is taken after each batch, so the gateway signs several sizes that are
not powers of two. Then every record's leaf, every inclusion proof (every
index at every size 1..n) and every consistency proof (every pair of sizes)
the gateway serves is checked with ``tests/rfc9162_reference.py``, which
shares no code with ``gateway.audit.merkle``. Roots are computed by the
reference from the records themselves and must equal the gateway's roots and
its signed heads, so the gateway is not trusted for any value it is judged on.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from exchange.client.sdk import Client
from gateway.audit.treehead import SignedTreeHead
from gateway.client import AuditClient
from liaison.lab.lab import Lab
from tests.integration.labutil import INVENTORY, directory, wait_for
from tests.rfc9162_reference import leaf_hash, mth, verify_consistency, verify_inclusion

pytestmark = pytest.mark.slow

RU, TJ = "ru-mvd-dushanbe", "tj-mvd-moscow"
BATCHES = (3, 2, 4, 1)  # case messages per batch; each logs an acceptance and a receipt


@dataclass(frozen=True)
class Log:
    entries: list[bytes]  # index i -> the exact leaf bytes the gateway serves
    roots: list[bytes]  # roots[n] = the reference MTH of the first n entries
    heads: list[SignedTreeHead]  # signed after each batch


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with Lab(tmp_path_factory.mktemp("lab"), inventory=INVENTORY) as lab:
        yield lab


@pytest.fixture(scope="module")
def audit(lab: Lab) -> Iterator[AuditClient]:
    with AuditClient.from_lab(lab.root) as client:
        yield client


def _settle(audit: AuditClient, at_least: int) -> int:
    """Wait until the log holds ``at_least`` records and stops growing; return its size."""
    wait_for(lambda: audit.size() >= at_least, what=f"{at_least} audit records")
    sizes = [audit.size()]
    while True:  # no late receipt still on its way (each step bounded; at most 20 steps)
        time.sleep(0.5)
        sizes.append(audit.size())
        if sizes[-1] == sizes[-2]:
            return sizes[-1]
        assert len(sizes) < 20, "the audit log kept growing"


@pytest.fixture(scope="module")
def log(lab: Lab, audit: AuditClient) -> Log:
    heads: list[SignedTreeHead] = []
    client = Client.from_lab(lab.root, RU)
    try:
        for b, count in enumerate(BATCHES):
            before = audit.size()
            for i in range(count):
                client.send_case_message([TJ], case_id=f"REF-{b}", text=f"message {i}")
            _settle(audit, before + 2 * count)
            heads.append(audit.tree_head())  # signs the current size (or returns its stored head)
    finally:
        client.close()
    entries: list[bytes] = []
    for r in audit.all_records():
        assert r.index == len(entries), "the gateway served records out of order or with a gap"
        entries.append(r.entry)
    return Log(entries, [mth(entries[:n]) for n in range(len(entries) + 1)], heads)


def test_the_log_has_sizes_worth_testing(log: Log) -> None:
    sizes = [h.tree_head.size for h in log.heads]
    assert len(log.entries) >= 17  # at least a five-level tree
    assert sizes == sorted(sizes)
    assert len(set(sizes)) == len(BATCHES)
    assert any(s & (s - 1) for s in sizes), "no signed size that is not a power of two"


def test_signed_roots_are_the_reference_roots_of_the_records(lab: Lab, log: Log) -> None:
    for head in log.heads:
        head.verify(directory(lab))  # the gateway signed it (our code: signatures are not in scope here)
        th = head.tree_head
        assert th.size <= len(log.entries)
        assert th.root == log.roots[th.size], f"signed root of size {th.size} is not the RFC 9162 MTH"


def test_every_inclusion_proof_at_every_size(audit: AuditClient, log: Log) -> None:
    checked = 0
    for n in range(1, len(log.entries) + 1):
        for i in range(n):
            proof, root = audit.inclusion_proof(i, n)
            assert root == log.roots[n], f"gateway root of size {n} differs from the reference MTH"
            verify_inclusion(leaf_hash(log.entries[i]), i, n, proof, log.roots[n])
            checked += 1
    assert checked == len(log.entries) * (len(log.entries) + 1) // 2


def test_inclusion_against_each_signed_head(audit: AuditClient, log: Log) -> None:
    for head in log.heads:
        th = head.tree_head
        stored = audit.tree_head(th.size)
        assert stored.tree_head == th  # the head stored for that size is the one handed out
        for i in range(th.size):
            proof, _ = audit.inclusion_proof(i, th.size)
            verify_inclusion(leaf_hash(log.entries[i]), i, th.size, proof, th.root)


def test_every_consistency_proof_between_every_pair_of_sizes(audit: AuditClient, log: Log) -> None:
    n_max = len(log.entries)
    for n in range(1, n_max + 1):
        for m in range(1, n + 1):
            proof = audit.consistency_proof(m, n)
            verify_consistency(m, n, proof, log.roots[m], log.roots[n])


def test_consistency_between_signed_heads(audit: AuditClient, log: Log) -> None:
    for a in log.heads:
        for b in log.heads:
            m, n = a.tree_head.size, b.tree_head.size
            if 0 < m <= n:
                verify_consistency(m, n, audit.consistency_proof(m, n), a.tree_head.root, b.tree_head.root)
