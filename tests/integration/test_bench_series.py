"""`liaison bench exchange --series` at a tiny size: real labs, real baselines, report checked.

The slow test runs the CLI for offices {1, 2} x senders {1, 2} x payload {1 KiB}
with ten messages per point and checks the report's shape, that every figure
is positive and consistent, and that each ratio is the figure over the
same-run baseline it names. The fast tests cover the generated inventory, the
per-point message caps and the size option.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from exchange.core.model import Kind
from keys.deployment import load_inventory
from liaison.bench.series import SeriesBudget, office_ids, series_inventory
from liaison.commands.bench_series import parse_size

MIB = 1 << 20


@pytest.mark.parametrize("offices", [1, 2, 4])
def test_inventory_has_the_offices_and_allows_case_messages(tmp_path: Path, offices: int) -> None:
    path = tmp_path / "inventory.toml"
    path.write_text(series_inventory(offices))
    inv = load_inventory(path)
    ids = [o.id for o in inv.offices]
    assert ids == office_ids(offices)
    assert len(ids) == max(offices, 2)  # one sending office still needs a recipient
    assert {r.sender for r in inv.policy} == set(ids)
    assert all(Kind.CASE_MESSAGE in r.kinds and "*" in r.recipients for r in inv.policy)
    assert inv.limits.max_body_bytes >= MIB  # a 1 MiB point must fit


def test_point_messages_scale_down_with_payload() -> None:
    budget = SeriesBudget()
    assert budget.point_messages(1024, 64) == budget.max_messages
    assert budget.point_messages(MIB, 1) == budget.max_bytes // MIB
    assert budget.point_messages(MIB, 1) < budget.point_messages(64 << 10, 1)
    assert SeriesBudget(max_bytes=MIB).point_messages(MIB, 16) == 16  # every sender sends at least once
    assert budget.baseline_messages(MIB, 64) == 4 * 64


@pytest.mark.parametrize(
    ("text", "size"),
    [("1024", 1024), ("64KiB", 64 << 10), ("1MiB", MIB), ("2k", 2048), (" 3 mib ", 3 * MIB), ("7b", 7)],
)
def test_size_option(text: str, size: int) -> None:
    assert parse_size(text) == size


def test_bad_size_is_a_usage_error() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "liaison.cli", "bench", "exchange", "--series", "--payloads", "1XB"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "not a size: '1XB'" in done.stderr


@pytest.mark.slow
def test_tiny_series_through_the_cli(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    cmd = [
        sys.executable, "-m", "liaison.cli", "bench", "exchange", "--series",
        "--offices", "1", "2", "--senders", "1", "2", "--payloads", "1KiB",
        "--point-seconds", "30", "--point-messages", "10", "--warmup", "2",
        "--baseline-messages", "200", "--out", str(out),
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=150, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    series = json.loads(out.read_text())["exchange"]["series"]

    machine = series["machine"]
    assert machine["cores"] >= 1
    assert len(machine["load_average"]) == 3
    assert len(machine["load_average_end"]) == 3
    assert series["offices"] == [1, 2]
    assert series["senders"] == [1, 2]
    assert series["payloads"] == [1024]

    base = series["baselines"]["1024"]
    assert set(base["grpc_echo_calls_per_s"]) == {"1", "2"}
    assert all(v > 0 for v in base["grpc_echo_calls_per_s"].values())
    for key in ("core_pubsub_msgs_per_s", "js_pipelined_msgs_per_s", "js_sequential_msgs_per_s"):
        assert base[key] > 0
    assert base["payload_size"] == 1024

    points = series["points"]
    assert [(p["offices"], p["senders"], p["payload_bytes"]) for p in points] == [
        (1, 1, 1024), (1, 2, 1024), (2, 1, 1024), (2, 2, 1024),
    ]  # fmt: skip
    # Senders are split across the sending offices; one sender leaves the second office idle.
    assert [p["senders_per_office"] for p in points] == [[1], [2], [1, 0], [1, 1]]
    assert [p["sending_offices"] for p in points] == [1, 1, 1, 2]
    for p in points:
        # The 30 s budget is far more than ten messages need: the cap decides, nothing fails.
        assert p["errors"] == 0, p["error_kinds"]
        assert p["accepted"] == 10
        assert p["delivered"] == p["accepted"]
        assert p["accepted_per_s"] > 0
        assert p["delivered_per_s"] > 0
        assert p["delivered_per_s"] == pytest.approx(p["delivered"] / p["deliver_seconds"])
        assert p["accepted_per_s"] == pytest.approx(p["accepted"] / p["accept_seconds"])
        assert p["delivered_mib_per_s"] == pytest.approx(p["delivered_per_s"] * 1024 / MIB)
        assert 0 < p["latency_ms_p50"] <= p["latency_ms_p99"]
        assert p["load_average_1m"] >= 0
        # Every latency runs from a send inside the point to a delivery no later than the last one.
        assert p["deliver_seconds"] * 1000 >= p["latency_ms_p99"]
        echo = base["grpc_echo_calls_per_s"][str(p["senders"])]
        r = p["ratios"]
        assert r["accepted_vs_grpc_echo"] == pytest.approx(p["accepted_per_s"] / echo)
        assert r["delivered_vs_grpc_echo"] == pytest.approx(p["delivered_per_s"] / echo)
        assert r["delivered_vs_nats_pubsub"] == pytest.approx(
            p["delivered_per_s"] / base["core_pubsub_msgs_per_s"]
        )
        assert r["delivered_vs_jetstream"] == pytest.approx(
            p["delivered_per_s"] / base["js_pipelined_msgs_per_s"]
        )

    # The table has one row per point, in the same order, with the same counts.
    rows = [line.split() for line in done.stdout.splitlines() if re.match(r"^\s+\d+\s+\d+\s+1 KiB\s", line)]
    assert [(int(r[0]), int(r[1]), int(r[4]), int(r[5])) for r in rows] == [
        (p["offices"], p["senders"], p["accepted"], p["delivered"]) for p in points
    ]
