"""Audit-log benchmark: append rate and proof latency on SQLite and PostgreSQL.

:func:`run_audit_bench` grows ONE fresh log per store through increasing
sizes (by default 10k, then to 100k, then to 1M entries), appending synthetic
records (about 300 bytes each, with full metadata) in batches. At every size
it measures, against the real store:

- the append rate of the entries added since the previous size (entries/s;
  the store's leaf hashing and metadata checks count, generating the records
  does not);
- inclusion-proof, consistency-proof and historical-root latency (p50, p99,
  max over random indices and sizes), each timed proof then VERIFIED against
  the root, outside the timing;
- a consistency proof from the previous size's root to the new one (the log
  grew append-only);
- the size on disk (SQLite: the database and WAL files; PostgreSQL:
  ``pg_total_relation_size`` of the schema's tables, indexes and TOAST included).

PostgreSQL figures are taken after an ``ANALYZE`` of the two tables (the
steady state autovacuum keeps a deployment in); a bulk load of 900k rows in
a minute outruns autovacuum. Before that ``ANALYZE`` the benchmark also times
100 inclusion proofs as-is (``inclusion_proof_before_analyze``): a generic plan
that psycopg's prepared statements got while the log was small may stay cached.

The SQLite log lives in a temporary directory; the PostgreSQL log in a fresh
schema that is dropped afterwards, also on failure. This module does not
benchmark the gateway around the store, and does not read the environment:
the caller passes the DSN (``liaison bench audit`` takes it from
``--pg-dsn`` or ``LIAISON_TEST_PG_DSN``).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import random
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import psycopg
from psycopg import sql

from exchange.core.errors import ConfigError, StoreError
from gateway.audit.merkle import verify_consistency, verify_inclusion
from gateway.audit.postgres import PostgresAuditStore
from gateway.audit.query import MAX_APPEND_BATCH
from gateway.audit.sqlite import SQLiteAuditStore
from gateway.audit.store import AuditStore

__all__ = [
    "DEFAULT_BATCH",
    "DEFAULT_SAMPLES",
    "DEFAULT_SIZES",
    "STORES",
    "format_table",
    "run_audit_bench",
    "synthetic_entries",
    "table_row",
]

DEFAULT_SIZES: Final = (10_000, 100_000, 1_000_000)
DEFAULT_BATCH: Final = 10_000
DEFAULT_SAMPLES: Final = 1000
STORES: Final = ("sqlite", "postgres")
SCHEMA_PREFIX: Final = "bench_audit_"
STALE_SAMPLES: Final = 100

Row = dict[str, Any]
Progress = Callable[[str, Row], None]


def synthetic_entries(start: int, count: int) -> list[tuple[bytes, dict[str, object]]]:
    """Records ``start .. start+count-1``: deterministic bytes and gateway-like metadata."""
    out: list[tuple[bytes, dict[str, object]]] = []
    for i in range(start, start + count):
        meta: dict[str, object] = {
            "at_ms": 1_700_000_000_000 + i,
            "verdict": "accepted" if i % 17 else "rejected",
            "reason": None if i % 17 else "policy-denied",
            "message_id": f"0190{i:028x}",
            "sender": f"office-{i % 7}",
            "recipients": [f"office-{(i + 1) % 7}"],
            "kind": "alert" if i % 3 == 0 else "case-message",
            "priority": "routine",
            "case_id": f"case-{i % 1000}",
        }
        out.append((json.dumps({"i": i, **meta, "digest": f"{i:064x}"}).encode(), meta))
    return out


def _latency(samples: Sequence[float]) -> dict[str, float]:
    """p50 / p99 (nearest rank) / max in milliseconds."""
    ordered = sorted(samples)

    def rank(q: float) -> float:
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)]

    return {
        "p50_ms": round(rank(0.50) * 1000, 3),
        "p99_ms": round(rank(0.99) * 1000, 3),
        "max_ms": round(ordered[-1] * 1000, 3),
        "samples": len(ordered),
    }


def _check_sizes(sizes: Sequence[int], batch: int, samples: int) -> None:
    if not sizes or any(s <= 0 for s in sizes) or list(sizes) != sorted(set(sizes)):
        raise ConfigError("audit bench sizes must be positive and strictly increasing")
    if not 0 < batch <= MAX_APPEND_BATCH:
        raise ConfigError(f"audit bench batch must be 1..{MAX_APPEND_BATCH}")
    if samples <= 0:
        raise ConfigError("audit bench samples must be positive")


def _inclusion(store: AuditStore, size: int, root: bytes, samples: int, rng: random.Random) -> list[float]:
    """Time ``samples`` inclusion proofs at random indices; verify each one (untimed)."""
    out: list[float] = []
    for _ in range(samples):
        index = rng.randrange(size)
        t0 = time.perf_counter()
        proof = store.inclusion_proof(index, size)
        out.append(time.perf_counter() - t0)
        verify_inclusion(store.entry(index).leaf_hash, index, size, proof, root)
    return out


def _measure(store: AuditStore, size: int, samples: int, rng: random.Random) -> Row:
    """Time proofs and roots at ``size``; verify every proof timed. Returns the latency rows."""
    root = store.root(size)
    incl = _inclusion(store, size, root, samples, rng)
    cons: list[float] = []
    for _ in range(samples):
        m = rng.randrange(1, size + 1)
        t0 = time.perf_counter()
        proof = store.consistency_proof(m, size)
        cons.append(time.perf_counter() - t0)
        verify_consistency(m, size, proof, store.root(m), root)
    hist: list[float] = []
    for _ in range(samples):
        m = rng.randrange(1, size + 1)
        t0 = time.perf_counter()
        store.root(m)
        hist.append(time.perf_counter() - t0)
    current: list[float] = []
    for _ in range(samples):
        t0 = time.perf_counter()
        store.root()  # what a tree-head signer asks: size read + root of the in-memory frontier
        current.append(time.perf_counter() - t0)
    return {
        "root_hex": root.hex(),
        "inclusion_proof": _latency(incl),
        "consistency_proof": _latency(cons),
        "root": _latency(hist),
        "current_root": _latency(current),
        "verified": {"inclusion_proofs": len(incl), "consistency_proofs": len(cons)},
    }


@dataclass
class _Log:
    """A fresh log on one engine, with what the benchmark needs around it."""

    store: AuditStore
    disk_bytes: Callable[[], int]
    engine: Row
    # Refresh planner statistics (what autovacuum does in a steady deployment); None: not needed.
    analyze: Callable[[], None] | None = None


def _grow(
    log: _Log,
    *,
    name: str,
    sizes: Sequence[int],
    batch: int,
    samples: int,
    seed: int,
    progress: Progress | None,
) -> list[Row]:
    store, rng = log.store, random.Random(seed)
    rows: list[Row] = []
    filled, total_s = 0, 0.0
    previous_root: bytes | None = None
    for size in sizes:
        append_s = 0.0
        for start in range(filled, size, batch):
            entries = synthetic_entries(start, min(batch, size - start))
            t0 = time.perf_counter()
            store.append(entries)
            append_s += time.perf_counter() - t0
        added = size - filled
        total_s += append_s
        if store.size() != size:
            raise StoreError(f"{name} store holds {store.size()} entries, expected {size}")
        row: Row = {
            "entries": size,
            "appended": added,
            "append_seconds": round(append_s, 3),
            "append_per_second": round(added / append_s) if append_s else None,
            "cumulative_append_per_second": round(size / total_s) if total_s else None,
        }
        if log.analyze is not None:
            # As-is right after the bulk load: plans cached at smaller sizes may be stale.
            stale = _inclusion(store, size, store.root(size), min(samples, STALE_SAMPLES), rng)
            row["inclusion_proof_before_analyze"] = _latency(stale)
            log.analyze()
        row.update(_measure(store, size, samples, rng))
        root = bytes.fromhex(row["root_hex"])
        if previous_root is not None:
            verify_consistency(filled, size, store.consistency_proof(filled, size), previous_root, root)
            row["verified"]["growth_consistency"] = f"{filled} -> {size}"
        previous_root, filled = root, size
        row["store_bytes"] = log.disk_bytes()
        row["bytes_per_entry"] = round(row["store_bytes"] / size, 1)
        rows.append(row)
        if progress is not None:
            progress(name, row)
    return rows


# --- the two engines ------------------------------------------------------------------------


@contextlib.contextmanager
def _sqlite_log() -> Iterator[_Log]:
    with tempfile.TemporaryDirectory(prefix="liaison-audit-bench-") as tmp:
        path = Path(tmp) / "audit.db"
        store = SQLiteAuditStore(path)
        engine: Row = {
            "engine": f"SQLite {sqlite3.sqlite_version}",
            "settings": {"journal_mode": "wal", "synchronous": "full"},
            "location": "temporary file",
        }

        def disk_bytes() -> int:  # database + WAL (+ shared-memory index) files
            return sum(p.stat().st_size for p in Path(tmp).iterdir() if p.is_file())

        try:
            yield _Log(store, disk_bytes, engine)
        finally:
            store.close()


def _show(conn: psycopg.Connection[tuple[Any, ...]], setting: str) -> str:
    row = conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(setting))).fetchone()
    return str(row[0]) if row else "?"


@contextlib.contextmanager
def _postgres_log(dsn: str) -> Iterator[_Log]:
    schema = f"{SCHEMA_PREFIX}{uuid.uuid4().hex[:16]}"
    try:
        admin = psycopg.connect(dsn, autocommit=True)
    except psycopg.Error as e:  # the DSN may hold a password: name only the failure class
        raise StoreError(f"cannot connect to PostgreSQL: {type(e).__name__}") from e
    try:
        settings = {
            key: _show(admin, key)
            for key in ("server_version", "synchronous_commit", "fsync", "shared_buffers")
        }
        engine: Row = {
            "engine": f"PostgreSQL {settings.pop('server_version')}",
            "settings": settings,
            "schema": schema,
        }

        def disk_bytes() -> int:
            row = admin.execute(
                "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relkind = 'r'",
                [schema],
            ).fetchone()
            return int(row[0]) if row else 0

        def analyze() -> None:
            tables = sql.SQL(", ").join(sql.Identifier(schema, t) for t in ("entries", "nodes"))
            admin.execute(sql.SQL("ANALYZE {}").format(tables))

        store = PostgresAuditStore(dsn, schema=schema)
        try:
            yield _Log(store, disk_bytes, engine, analyze)
        finally:
            store.close()
    finally:
        with contextlib.suppress(psycopg.Error):
            admin.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
        admin.close()


def _load() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # not available on this platform
        return None


def run_audit_bench(
    sizes: Sequence[int] = DEFAULT_SIZES,
    stores: Sequence[str] = STORES,
    *,
    pg_dsn: str | None = None,
    batch: int = DEFAULT_BATCH,
    samples: int = DEFAULT_SAMPLES,
    seed: int = 1,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Grow one fresh log per store through ``sizes``; return the report (JSON-ready).

    ``postgres`` without ``pg_dsn`` is skipped, with the reason in the report.
    Raises ``ConfigError`` for bad sizes or store names, ``StoreError`` when a
    store fails, and a ``gateway.audit.errors`` proof error if a proof does not verify.
    """
    _check_sizes(sizes, batch, samples)
    unknown = [s for s in stores if s not in STORES]
    if unknown or not stores:
        raise ConfigError(f"unknown audit bench stores {unknown}: choose from {list(STORES)}")
    report: dict[str, Any] = {
        "sizes": list(sizes),
        "batch": batch,
        "samples": samples,
        "seed": seed,
        "entry_bytes_avg": round(sum(len(e) for e, _ in synthetic_entries(0, 1000)) / 1000, 1),
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "stores": {},
    }
    for name in dict.fromkeys(stores):
        if name == "postgres" and not pg_dsn:
            reason = "no PostgreSQL DSN (pass --pg-dsn or set LIAISON_TEST_PG_DSN)"
            report["stores"][name] = {"skipped": reason}
            continue
        load_start = _load()
        with _sqlite_log() if name == "sqlite" else _postgres_log(pg_dsn or "") as log:
            t0 = time.perf_counter()
            results = _grow(
                log, name=name, sizes=sizes, batch=batch, samples=samples, seed=seed, progress=progress
            )
            wall = round(time.perf_counter() - t0, 1)
        report["stores"][name] = {
            **log.engine,
            "wall_seconds": wall,
            "load_average": {"start": load_start, "end": _load()},  # other work on the machine
            "results": results,
        }
    return report


# --- presentation ----------------------------------------------------------------------------

_HEADER: Final = (
    "store", "entries", "append/s", "incl p50", "incl p99", "cons p50", "cons p99",
    "root p50", "root p99", "on disk", "B/entry",
)  # fmt: skip


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def table_row(name: str, row: Mapping[str, Any]) -> list[str]:
    """One printable row (latencies in ms) for a measured size."""
    lat = [
        f"{row[k][q]:.3f}"
        for k in ("inclusion_proof", "consistency_proof", "root")
        for q in ("p50_ms", "p99_ms")
    ]
    return [
        name, f"{row['entries']:,}", f"{row['append_per_second']:,}", *lat,
        _mib(row["store_bytes"]), f"{row['bytes_per_entry']:.0f}",
    ]  # fmt: skip


def format_table(report: Mapping[str, Any]) -> str:
    """The report as an aligned text table (latencies in ms); skipped stores as a note."""
    lines: list[list[str]] = [list(_HEADER)]
    notes: list[str] = []
    for name, result in report["stores"].items():
        if "skipped" in result:
            notes.append(f"{name}: skipped ({result['skipped']})")
            continue
        lines.extend(table_row(name, row) for row in result["results"])
    widths = [max(len(line[i]) for line in lines) for i in range(len(_HEADER))]
    text = [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(line, widths, strict=True))
        )
        for line in lines
    ]
    for name, result in report["stores"].items():
        for row in result.get("results", ()):
            if "inclusion_proof_before_analyze" in row:
                cold = row["inclusion_proof_before_analyze"]
                notes.append(
                    f"{name} {row['entries']:,}: inclusion p50 {cold['p50_ms']:.3f} ms, "
                    f"p99 {cold['p99_ms']:.3f} ms before ANALYZE"
                )
    return "\n".join([*text, *notes])
