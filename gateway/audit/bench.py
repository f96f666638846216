"""Audit-log benchmark: batched append throughput and proof latency on SQLite.

``run(n)`` fills a temporary SQLite audit store with ``n`` synthetic records
(about 200 bytes each, with full metadata) in batches, then times inclusion
and consistency proofs (served from stored subtree hashes, one batched read
each) and verifies every proof it timed. It does not benchmark PostgreSQL or
the gateway around the store. Run: ``python -m gateway.audit.bench [n]``.
"""

from __future__ import annotations

import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Final

from gateway.audit.merkle import verify_consistency, verify_inclusion
from gateway.audit.store import SQLiteAuditStore

__all__ = ["run"]

DEFAULT_BATCH: Final = 10_000
PROOF_SAMPLES: Final = 500


def _batch(start: int, count: int) -> list[tuple[bytes, dict[str, object]]]:
    out: list[tuple[bytes, dict[str, object]]] = []
    for i in range(start, start + count):
        meta: dict[str, object] = {
            "at_ms": 1_700_000_000_000 + i,
            "verdict": "accepted" if i % 17 else "rejected",
            "reason": None if i % 17 else "policy_denied",
            "message_id": f"0190{i:028x}",
            "sender": f"office-{i % 7}",
            "recipients": [f"office-{(i + 1) % 7}"],
            "kind": "alert" if i % 3 == 0 else "case-message",
            "priority": "routine",
            "case_id": f"case-{i % 1000}",
        }
        out.append((json.dumps({"i": i, **meta, "digest": f"{i:064x}"}).encode(), meta))
    return out


def _ms(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 3),
        "p99_ms": round(ordered[int(len(ordered) * 0.99) - 1] * 1000, 3),
        "max_ms": round(ordered[-1] * 1000, 3),
    }


def run(n: int = 1_000_000, batch: int = DEFAULT_BATCH, seed: int = 1) -> dict[str, object]:
    """Fill a temp SQLite log with n entries; return throughput and proof latencies."""
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="liaison-audit-bench-") as tmp:
        path = Path(tmp) / "audit.db"
        store = SQLiteAuditStore(path)
        try:
            append_s = 0.0
            for start in range(0, n, batch):
                rows = _batch(start, min(batch, n - start))
                t0 = time.perf_counter()
                store.append(rows)
                append_s += time.perf_counter() - t0
            root = store.root()
            incl: list[float] = []
            for _ in range(PROOF_SAMPLES):
                index = rng.randrange(n)
                t0 = time.perf_counter()
                proof = store.inclusion_proof(index, n)
                incl.append(time.perf_counter() - t0)
                verify_inclusion(store.entry(index).leaf_hash, index, n, proof, root)
            cons: list[float] = []
            for _ in range(PROOF_SAMPLES // 5):
                m = rng.randrange(1, n + 1)
                t0 = time.perf_counter()
                proof = store.consistency_proof(m, n)
                cons.append(time.perf_counter() - t0)
                verify_consistency(m, n, proof, store.root(m), root)
            hist: list[float] = []
            for _ in range(PROOF_SAMPLES // 5):
                m = rng.randrange(1, n + 1)
                t0 = time.perf_counter()
                store.root(m)
                hist.append(time.perf_counter() - t0)
            db_bytes = sum(p.stat().st_size for p in Path(tmp).iterdir())
        finally:
            store.close()
    return {
        "n": n,
        "batch": batch,
        "append_seconds": round(append_s, 2),
        "append_per_second": round(n / append_s) if append_s else None,
        "inclusion_proof": _ms(incl),
        "consistency_proof": _ms(cons),
        "historical_root": _ms(hist),
        "db_bytes": db_bytes,
    }


if __name__ == "__main__":
    print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000), indent=2))
