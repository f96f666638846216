"""`liaison bench audit` at tiny sizes: report shape, verified proofs, clean-up, CLI.

Runs the real benchmark function against a real SQLite file and, when
``LIAISON_TEST_PG_DSN`` is set, a real PostgreSQL schema (skipped otherwise).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest

from exchange.core.errors import ConfigError
from gateway.audit.merkle import leaf_hash, root_from_leaf_hashes
from liaison.bench.audit import format_table, run_audit_bench, synthetic_entries

SIZES = (100, 300)
SAMPLES = 20
LATENCIES = ("inclusion_proof", "consistency_proof", "root", "current_root")


def _dsn(store: str) -> str | None:
    if store == "sqlite":
        return None
    dsn = os.environ.get("LIAISON_TEST_PG_DSN")
    if not dsn:
        pytest.skip("LIAISON_TEST_PG_DSN not set: PostgreSQL audit benchmark skipped")
    return dsn


@pytest.mark.parametrize("store", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_report_shape_and_verified_proofs(store: str) -> None:
    dsn = _dsn(store)
    seen: list[tuple[str, int]] = []
    report = run_audit_bench(
        SIZES, [store], pg_dsn=dsn, batch=64, samples=SAMPLES,
        progress=lambda name, row: seen.append((name, row["entries"])),
    )  # fmt: skip
    json.dumps(report)  # the --out file must be plain JSON
    assert report["sizes"] == list(SIZES)
    assert seen == [(store, n) for n in SIZES]
    result = report["stores"][store]
    assert result["engine"].startswith("SQLite" if store == "sqlite" else "PostgreSQL")
    rows: list[dict[str, Any]] = result["results"]
    assert [r["entries"] for r in rows] == list(SIZES)
    assert [r["appended"] for r in rows] == [100, 200]  # the same log grew; nothing was refilled
    hashes = [leaf_hash(entry) for entry, _ in synthetic_entries(0, SIZES[-1])]
    for row in rows:
        # The root the benchmark proved against is the tree of exactly the records it wrote.
        assert row["root_hex"] == root_from_leaf_hashes(hashes[: row["entries"]]).hex()
        assert row["append_per_second"] > 0
        assert row["store_bytes"] > 0
        assert row["verified"]["inclusion_proofs"] == SAMPLES
        assert row["verified"]["consistency_proofs"] == SAMPLES
        for key in LATENCIES:
            lat = row[key]
            assert lat["samples"] == SAMPLES
            assert 0 <= lat["p50_ms"] <= lat["p99_ms"] <= lat["max_ms"]
        assert ("inclusion_proof_before_analyze" in row) == (store == "postgres")
    assert "growth_consistency" not in rows[0]["verified"]
    assert rows[1]["verified"]["growth_consistency"] == "100 -> 300"
    table = format_table(report)
    assert table.splitlines()[0].split()[:3] == ["store", "entries", "append/s"]
    assert [line.split()[:2] for line in table.splitlines()[1:3]] == [[store, "100"], [store, "300"]]
    if dsn is not None:  # the fresh schema is gone
        with psycopg.connect(dsn, autocommit=True) as conn:
            found = conn.execute(
                "SELECT 1 FROM pg_namespace WHERE nspname = %s", [result["schema"]]
            ).fetchall()
        assert found == []


def test_postgres_without_dsn_is_skipped_with_reason() -> None:
    report = run_audit_bench([10], ["postgres"], pg_dsn=None, samples=2)
    assert "LIAISON_TEST_PG_DSN" in report["stores"]["postgres"]["skipped"]
    assert "postgres: skipped (no PostgreSQL DSN" in format_table(report)


@pytest.mark.parametrize(
    ("sizes", "stores", "batch", "samples"),
    [
        pytest.param([], ["sqlite"], 10, 1, id="no-sizes"),
        pytest.param([0, 10], ["sqlite"], 10, 1, id="zero-size"),
        pytest.param([100, 10], ["sqlite"], 10, 1, id="decreasing"),
        pytest.param([10, 10], ["sqlite"], 10, 1, id="repeated"),
        pytest.param([10], ["sqlite"], 0, 1, id="zero-batch"),
        pytest.param([10], ["sqlite"], 100_001, 1, id="batch-over-store-limit"),
        pytest.param([10], ["sqlite"], 10, 0, id="zero-samples"),
        pytest.param([10], ["mysql"], 10, 1, id="unknown-store"),
        pytest.param([10], [], 10, 1, id="no-store"),
    ],
)
def test_bad_options_are_config_errors(sizes: list[int], stores: list[str], batch: int, samples: int) -> None:
    with pytest.raises(ConfigError):
        run_audit_bench(sizes, stores, batch=batch, samples=samples)


def test_cli_prints_table_and_writes_report(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    env = {k: v for k, v in os.environ.items() if k != "LIAISON_TEST_PG_DSN"}
    cmd = [
        sys.executable, "-m", "liaison.cli", "bench", "audit", "--audit-sizes", "50", "120",
        "--audit-samples", "5", "--audit-batch", "40", "--out", str(out),
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, check=False)
    assert done.returncode == 0, done.stderr
    assert "PostgreSQL leg skipped" in done.stdout
    assert any(line.split()[:2] == ["sqlite", "120"] for line in done.stdout.splitlines())
    audit = json.loads(out.read_text())["audit"]
    assert [r["entries"] for r in audit["stores"]["sqlite"]["results"]] == [50, 120]
    assert "skipped" in audit["stores"]["postgres"]

    bad = subprocess.run(
        [*cmd[:6], "120", "50", "--stores", "sqlite", "--out", str(out)],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )  # fmt: skip
    assert bad.returncode == 2
    assert bad.stderr.startswith("error: audit bench sizes must be positive and strictly increasing")
