"""The command line as a user runs it: `liaison lab up`, then send, inbox, status; clean stop.

Runs the real `liaison` entry point in subprocesses against a lab it started
itself, and checks that SIGTERM leaves no process behind.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.labutil import INVENTORY

LIAISON = [sys.executable, "-m", "liaison.cli"]


def run(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LIAISON, *args], capture_output=True, text=True, timeout=timeout, check=False)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie child of an exited parent is not alive for our purpose.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


@pytest.fixture(scope="module")
def lab_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("cli-lab")
    log = (root / "lab-up.log").open("wb")
    proc = subprocess.Popen(
        [*LIAISON, "lab", "up", "--dir", str(root), "--inventory", str(INVENTORY)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while not (root / "lab.json").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError((root / "lab-up.log").read_text())
        time.sleep(0.2)
    pids = _pids(root)
    yield root
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    log.close()
    wait_until = time.monotonic() + 10
    while any(_alive(p) for p in pids) and time.monotonic() < wait_until:
        time.sleep(0.1)
    assert not [p for p in pids if _alive(p)], "lab up left processes behind"


def _pids(root: Path) -> list[int]:
    doc = json.loads((root / "lab.json").read_text())
    return [doc["nats_pid"], doc["gateway"]["pid"], *(o["pid"] for o in doc["offices"])]


def test_send_inbox_status_as_json(lab_dir: Path) -> None:
    sent = run(
        "send", "alert", "--lab", str(lab_dir), "--from", "ru-mvd-dushanbe",
        "--to", "tj-mvd-moscow,tj-migration-moscow", "--priority", "flash",
        "--category", "drug-trafficking", "--subject", "Consignment", "--text", "Train 019", "--json",
    )  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    message_id = json.loads(sent.stdout)["message_id"]

    inbox = run("inbox", "--lab", str(lab_dir), "--office", "tj-mvd-moscow", "--json", "--wait", "5", "--ack")
    assert inbox.returncode == 0, inbox.stderr
    deliveries = [json.loads(line) for line in inbox.stdout.splitlines()]
    mine = [d for d in deliveries if d["message_id"] == message_id]
    assert len(mine) == 1
    assert mine[0] | {"cursor": 0, "created_ms": 0, "log_index": 0, "body": {}} == mine[0] | {
        "sender": "ru-mvd-dushanbe",
        "kind": "alert",
        "priority": "flash",
        "subject": "Consignment",
        "text": "Train 019",
        "cursor": 0,
        "created_ms": 0,
        "log_index": 0,
        "body": {},
    }

    deadline = time.monotonic() + 20
    while True:
        status = run("status", "--lab", str(lab_dir), "--office", "ru-mvd-dushanbe", message_id, "--json")
        assert status.returncode == 0, status.stderr
        states = {r["recipient"]: r["state"] for r in json.loads(status.stdout)["recipients"]}
        if states["tj-mvd-moscow"] == "READ" or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert states["tj-mvd-moscow"] == "READ"
    assert states["tj-migration-moscow"] in ("STAMPED", "DELIVERED")


def test_policy_rejection_shows_in_status(lab_dir: Path) -> None:
    sent = run(
        "send", "alert", "--lab", str(lab_dir), "--from", "tj-migration-moscow", "--to", "ru-mvd-dushanbe",
        "--category", "other", "--subject", "s", "--text", "t", "--json",
    )  # fmt: skip
    message_id = json.loads(sent.stdout)["message_id"]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        doc = json.loads(
            run(
                "status", "--lab", str(lab_dir), "--office", "tj-migration-moscow", message_id, "--json"
            ).stdout
        )
        if doc["rejected"]:
            break
        time.sleep(0.3)
    assert doc["rejected"]
    assert doc["recipients"][0]["state"] == "REJECTED"
    assert doc["recipients"][0]["rejection"] == "policy-denied"


LAB = ["--lab", "{lab}"]
RU_TO_TJ = ["--from", "ru-mvd-dushanbe", "--to", "tj-mvd-moscow", "--text", "t"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["send", "alert", "--to", "x", "--text", "t", "--category", "other"], "give --endpoint"),
        (
            ["send", "alert", *LAB, "--from", "nowhere", "--to", "x", "--text", "t", "--category", "other"],
            "nowhere",
        ),
        (["send", "alert", *LAB, *RU_TO_TJ, "--category", "smuggling"], "unknown alert category"),
        (
            ["send", "case", *LAB, *RU_TO_TJ[:3], "nowhere", "--text", "t", "--case", "C-1"],
            "INVALID_ARGUMENT",
        ),
        (["status", *LAB, "--office", "ru-mvd-dushanbe", "not-an-id"], "INVALID_ARGUMENT"),
        (["status", "--lab", "/nonexistent", "--office", "ru-mvd-dushanbe", "x"], "cannot read"),
    ],
    ids=["no-target", "unknown-office", "bad-category", "unknown-recipient", "malformed-id", "no-lab"],
)
def test_bad_input_gives_one_line_and_exit_2(args: list[str], needle: str, lab_dir: Path) -> None:
    result = run(*(a.replace("{lab}", str(lab_dir)) for a in args))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert needle in lines[0]
    assert "Traceback" not in result.stderr


def test_wrong_passphrase_for_a_node_is_one_line(tmp_path: Path, lab_dir: Path) -> None:
    config = lab_dir / "nodes" / "tj-mvd-moscow" / "config.toml"
    bad = tmp_path / "office.toml"
    wrong = tmp_path / "wrong-passphrase"
    wrong.write_text("not the passphrase\n")
    text = config.read_text()
    start = text.index("passphrase_file")
    end = text.index("\n", start)
    bad.write_text(text[:start] + f'passphrase_file = "{wrong}"' + text[end:])
    result = run("office", "serve", "--config", str(bad), timeout=30)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "Traceback" not in result.stderr
    assert "not the passphrase" not in result.stderr + result.stdout


def test_readme_sdk_example_runs(lab_dir: Path) -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "agency_client.py"
    result = subprocess.run(
        [sys.executable, str(example), str(lab_dir)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "Moscow received: Consignment on train 019" in result.stdout
    assert "receipt chain: ['ACCEPTED', 'STAMPED', 'DELIVERED', 'READ']" in result.stdout
