"""`liaison audit …` end to end against a lab of real processes.

One lab per module: traffic is sent through real office nodes (one alert the
policy denies), then the operators' commands run as a user would (through
``liaison.cli.main`` and once as a subprocess), and their output is checked
with the Merkle verifiers, not with the CLI's own code.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from exchange.client.sdk import Client
from exchange.core.model import AlertCategory, ConsularRequestType, Person, Priority, Suite
from gateway.audit.codec import decode_signed_tree_head, encode_signed_tree_head, encode_tree_head
from gateway.audit.merkle import leaf_hash, verify_consistency, verify_inclusion
from gateway.audit.record import Verdict
from gateway.audit.treehead import sign_cosignature
from gateway.client import AuditClient, AuditFilter
from liaison.cli import main
from liaison.lab.lab import Lab
from tests.integration.labutil import INVENTORY, identity, wait_for

RU, TJ, MIG = "ru-mvd-dushanbe", "tj-mvd-moscow", "tj-migration-moscow"
WITNESS = "tj-embassy-moscow"
LIAISON = Path(sys.executable).parent / "liaison"


@dataclass(frozen=True)
class Traffic:
    alert: str  # RU -> TJ, MIG (flash alert)
    case: str  # RU -> TJ case message, case CASE-AUDIT-1
    consular: str  # MIG -> RU consular request
    denied: str  # MIG -> RU alert: policy-denied
    since_ms: int
    until_ms: int
    early_size: int  # a signed head taken after the first message


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with Lab(tmp_path_factory.mktemp("lab"), inventory=INVENTORY) as lab:
        yield lab


@pytest.fixture(scope="module")
def audit(lab: Lab) -> Iterator[AuditClient]:
    with AuditClient.from_lab(lab.root) as client:
        yield client


def _logged(audit: AuditClient, message_id: str, verdict: Verdict) -> bool:
    records, _ = audit.query(AuditFilter(message_id=message_id))
    return any(r.record.verdict is verdict for r in records)


@pytest.fixture(scope="module")
def traffic(lab: Lab, audit: AuditClient) -> Traffic:
    clients = {office: Client.from_lab(lab.root, office) for office in (RU, MIG)}
    try:
        since = int(time.time() * 1000) - 1
        alert = (
            clients[RU]
            .send_alert(
                [TJ, MIG],
                category=AlertCategory.WANTED_PERSON,
                priority=Priority.FLASH,
                subject="s",
                text="t",
            )
            .message_id
        )
        wait_for(lambda: _logged(audit, alert, Verdict.ACCEPTED), what="alert logged")
        early = audit.tree_head().tree_head.size
        case = clients[RU].send_case_message([TJ], case_id="CASE-AUDIT-1", text="question").message_id
        consular = (
            clients[MIG]
            .send_consular_request(
                [RU],
                citizen=Person("Dilshod N.", "1985-09-30", "TJ"),
                request_type=ConsularRequestType.LEGAL_CONSULTATION,
                text="counsel",
            )
            .message_id
        )
        denied = (
            clients[MIG]
            .send_alert([RU], category=AlertCategory.OTHER, priority=Priority.ROUTINE, subject="x", text="y")
            .message_id
        )
        for mid, verdict in (
            (case, Verdict.ACCEPTED),
            (consular, Verdict.ACCEPTED),
            (denied, Verdict.REJECTED),
        ):
            wait_for(lambda m=mid, v=verdict: _logged(audit, m, v), what=f"{mid} logged")  # type: ignore[misc]
        until = int(time.time() * 1000) + 1
    finally:
        for c in clients.values():
            c.close()
    return Traffic(alert, case, consular, denied, since, until, early)


Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def run(lab: Lab, capsys: pytest.CaptureFixture[str]) -> Run:
    """``run("head", "--json")`` → (exit code, stdout, stderr) of `liaison audit head --lab … --json`."""

    def _run(command: str, *args: str, lab_opt: bool = True) -> tuple[int, str, str]:
        argv = ["audit", command, *(["--lab", str(lab.root)] if lab_opt else []), *args]
        code = main(argv)
        out = capsys.readouterr()
        return code, out.out, out.err

    return _run


def _json(out: str) -> Any:
    return json.loads(out)


def _lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def _index_of(run: Run, message_id: str) -> int:
    code, out, _ = run("query", "--message", message_id, "--verdict", "accepted", "--json")
    assert code == 0
    return int(_lines(out)[0]["index"])


# --- head, show, proof, consistency ------------------------------------------------


def test_head_json(run: Run, traffic: Traffic) -> None:
    code, out, _ = run("head", "--json")
    assert code == 0
    head = _json(out)
    assert {"size", "root", "timestamp", "signature", "signatures", "cosignatures", "gateway"} <= set(head)
    assert head["size"] >= 4
    assert len(bytes.fromhex(head["root"])) == 32
    assert len(base64.b64decode(head["signature"])) == 64
    assert head["gateway"] == "embassy-gateway"
    assert head["timestamp"] >= traffic.since_ms
    assert head["signatures"][0]["algorithm"] == "ed25519"


def test_show_entry_is_the_leaf_proved_against_the_head(
    run: Run, audit: AuditClient, traffic: Traffic
) -> None:
    index = _index_of(run, traffic.alert)
    code, out, _ = run("show", str(index), "--json")
    assert code == 0
    shown = _json(out)
    assert (shown["index"], shown["message_id"], shown["sender"]) == (index, traffic.alert, RU)
    assert shown["recipients"] == [TJ, MIG]
    assert (shown["kind"], shown["priority"], shown["verdict"]) == ("alert", "flash", "accepted")
    leaf = leaf_hash(base64.b64decode(shown["entry"]))
    assert leaf.hex() == shown["leaf_hash"]
    head = _json(run("head", "--json")[1])
    proof, _ = audit.inclusion_proof(index, head["size"])
    verify_inclusion(leaf, index, head["size"], proof, bytes.fromhex(head["root"]))


def test_proof_and_consistency_json_verify(run: Run, traffic: Traffic) -> None:
    index = _denied_index(run, traffic)
    head = _json(run("head", "--json")[1])
    code, out, _ = run("proof", "--index", str(index), "--size", str(head["size"]), "--json")
    assert code == 0
    proved = _json(out)
    assert proved["root"] == head["root"]
    entry = base64.b64decode(_json(run("show", str(index), "--json")[1])["entry"])
    verify_inclusion(
        leaf_hash(entry),
        index,
        head["size"],
        [bytes.fromhex(p) for p in proved["proof"]],
        bytes.fromhex(head["root"]),
    )

    early = _json(run("head", "--size", str(traffic.early_size), "--json")[1])
    code, out, _ = run("consistency", "--from", str(early["size"]), "--to", str(head["size"]), "--json")
    assert code == 0
    proof = [bytes.fromhex(p) for p in _json(out)["proof"]]
    verify_consistency(
        early["size"], head["size"], proof, bytes.fromhex(early["root"]), bytes.fromhex(head["root"])
    )


def _denied_index(run: Run, traffic: Traffic) -> int:
    code, out, _ = run("query", "--message", traffic.denied, "--json")
    assert code == 0
    return int(_lines(out)[0]["index"])


# --- query, pagination, stats, tail ------------------------------------------------

QUERIES: list[tuple[str, Callable[[Traffic], list[str]], Callable[[dict[str, Any], Traffic], bool], str]] = [
    ("sender", lambda t: ["--sender", MIG], lambda r, t: r["sender"] == MIG, "consular"),
    (
        "rejected-policy-denied",
        lambda t: ["--verdict", "rejected", "--reason", "policy-denied"],
        lambda r, t: (r["verdict"], r["reason"]) == ("rejected", "policy-denied"),
        "denied",
    ),
    ("kind-alert", lambda t: ["--kind", "alert"], lambda r, t: r["kind"] == "alert", "alert"),
    ("message-id", lambda t: ["--message", t.case], lambda r, t: r["message_id"] == t.case, "case"),
    ("case-id", lambda t: ["--case", "CASE-AUDIT-1"], lambda r, t: r["case_id"] == "CASE-AUDIT-1", "case"),
    ("recipient", lambda t: ["--recipient", MIG], lambda r, t: MIG in r["recipients"], "alert"),
    ("priority", lambda t: ["--priority", "flash"], lambda r, t: r["priority"] == "flash", "alert"),
    (
        "time-window",
        lambda t: ["--since", str(t.since_ms), "--until", str(t.until_ms)],
        lambda r, t: t.since_ms <= r["at_ms"] < t.until_ms,
        "denied",
    ),
]


@pytest.mark.parametrize(
    ("args", "holds", "must_find"), [q[1:] for q in QUERIES], ids=[q[0] for q in QUERIES]
)
def test_query_filters(
    run: Run,
    traffic: Traffic,
    args: Callable[[Traffic], list[str]],
    holds: Callable[[dict[str, Any], Traffic], bool],
    must_find: str,
) -> None:
    code, out, _ = run("query", *args(traffic), "--limit", "0", "--json")
    assert code == 0
    rows = _lines(out)
    assert rows
    assert all(holds(r, traffic) for r in rows), rows
    assert getattr(traffic, must_find) in {r["message_id"] for r in rows}
    indices = [r["index"] for r in rows]
    assert indices == sorted(indices, reverse=True)  # newest first by default


def test_query_pages_through_tokens(run: Run, audit: AuditClient, traffic: Traffic) -> None:
    code, out, _ = run("query", "--oldest-first", "--page-size", "2", "--limit", "0", "--json")
    assert code == 0
    indices = [r["index"] for r in _lines(out)]
    assert indices == list(range(len(indices)))
    assert len(indices) >= 5
    code, out, err = run("query", "--page-size", "2", "--limit", "3")
    assert code == 0
    assert len(out.splitlines()) == 3
    assert "3 record(s)" in err


def test_stats_count_what_was_sent(run: Run, traffic: Traffic) -> None:
    code, out, _ = run("stats", "--since", str(traffic.since_ms), "--until", str(traffic.until_ms), "--json")
    assert code == 0
    stats = _json(out)
    got = {
        (r["sender"], r["recipient"], r["kind"], r["verdict"], r["reason"]): r["count"]
        for r in stats["rows"]
        if r["verdict"] in ("accepted", "rejected")
    }
    assert got == {
        (RU, TJ, "alert", "accepted", ""): 1,
        (RU, MIG, "alert", "accepted", ""): 1,
        (RU, TJ, "case-message", "accepted", ""): 1,
        (MIG, RU, "consular-request", "accepted", ""): 1,
        (MIG, RU, "alert", "rejected", "policy-denied"): 1,
    }
    assert stats["by_verdict"]["rejected"] == 1
    assert stats["total"] == sum(r["count"] for r in stats["rows"])
    code, out, _ = run("stats")
    assert code == 0
    assert "policy-denied" in out


def test_tail_from_index_with_limit(run: Run, traffic: Traffic) -> None:
    code, out, _ = run("tail", "--from", "1", "--limit", "3", "--json")
    assert code == 0
    assert [r["index"] for r in _lines(out)] == [1, 2, 3]


# --- verify, cosignatures, export, bundles -----------------------------------------


def test_verify_ok_and_reports_cosignatures(run: Run, lab: Lab, audit: AuditClient, traffic: Traffic) -> None:
    head = audit.tree_head()
    key = identity(lab, WITNESS).signing_keys(Suite.CLASSIC)[0]
    audit.add_cosignature(head.tree_head.size, sign_cosignature(head, WITNESS, key))
    size = head.tree_head.size
    code, out, _ = run("verify", "--to-size", str(size), "--from-size", str(traffic.early_size))
    assert code == 0, out
    assert len(out.splitlines()) == 1
    assert out.startswith(f"OK: {size} records verified")
    assert f"size {size} by {WITNESS}" in out
    code, out, _ = run("verify", "--json")
    assert code == 0
    assert _json(out)["ok"] is True


def test_verify_against_a_saved_head(run: Run, traffic: Traffic, tmp_path: Path) -> None:
    code, out, _ = run("head", "--size", str(traffic.early_size), "--json")
    assert code == 0
    saved = tmp_path / "head.json"
    saved.write_text(out)
    code, out, _ = run("verify", "--known-head", str(saved), "--scan-heads", "0")
    assert code == 0, out
    assert f"(sizes {traffic.early_size}.." in out
    forged = json.loads(saved.read_text()) | {"root": "00" * 32}
    saved.write_text(json.dumps(forged))
    code, out, _ = run("verify", "--known-head", str(saved))
    assert code == 1
    assert out.startswith("FAILED: ")
    assert "field root does not match" in out


@pytest.fixture(scope="module")
def bundle(lab: Lab, traffic: Traffic, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bundle") / "audit.json"
    code = main(
        [
            "audit",
            "export",
            "--lab",
            str(lab.root),
            "--out",
            str(path),
            "--from-size",
            str(traffic.early_size),
        ]
    )
    assert code == 0
    return path


def test_export_then_verify_bundle(run: Run, bundle: Path, traffic: Traffic) -> None:
    data = json.loads(bundle.read_text())
    assert len(data["tree_heads"]) >= 2
    assert data["consistency"]
    assert len(data["records"]) == data["size"]
    code, out, _ = run("verify-bundle", str(bundle), lab_opt=False)
    assert code == 0, out
    assert out.startswith("OK: bundle holds:")
    assert data["directory_digest"] in out


def _flip_sender(b: dict[str, Any]) -> None:
    rec = b["records"][2]
    entry = base64.b64decode(rec["entry"])
    at = entry.index(b"mvd")
    rec["entry"] = base64.b64encode(entry[:at] + b"mvc" + entry[at + 3 :]).decode()


def _resign_root(b: dict[str, Any]) -> None:
    """Change the root inside the signed bytes and keep the readable fields matching."""
    h = b["tree_heads"][-1]
    signed = decode_signed_tree_head(base64.b64decode(h["signed_tree_head"]))
    th = replace(signed.tree_head, root=bytes(32))
    forged = replace(signed, tree_head=th, tree_head_bytes=encode_tree_head(th))
    h["signed_tree_head"] = base64.b64encode(encode_signed_tree_head(forged)).decode()
    h["root"] = th.root.hex()


TAMPERS: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("record-byte-flipped", _flip_sender, "do not hash to the signed root"),
    ("record-dropped", lambda b: b["records"].pop(3), "not contiguous: expected index 3, found 4"),
    ("last-record-dropped", lambda b: b["records"].pop(), "covers more than"),
    (
        "readable-root-changed",
        lambda b: b["tree_heads"][-1].update(root="00" * 32),
        "field root does not match",
    ),
    ("signed-root-changed", _resign_root, "signature"),
    ("consistency-proof-dropped", lambda b: b["consistency"].clear(), "no consistency proof between sizes"),
    ("directory-digest-changed", lambda b: b.update(directory_digest="00" * 32), "directory_digest does not"),
    ("gateway-key-swapped", lambda b: b["public_keys"]["gateway"]["keys"].reverse(), "public_keys differ"),
]


@pytest.mark.parametrize(("tamper", "reason"), [t[1:] for t in TAMPERS], ids=[t[0] for t in TAMPERS])
def test_tampered_bundle_fails_with_reason(
    run: Run, bundle: Path, tmp_path: Path, tamper: Callable[[dict[str, Any]], None], reason: str
) -> None:
    data = json.loads(bundle.read_text())
    tamper(data)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    code, out, err = run("verify-bundle", str(bad), lab_opt=False)
    assert code == 1
    assert len(out.splitlines()) == 1
    assert out.startswith("FAILED: ")
    assert reason in out
    assert "Traceback" not in err


# --- errors ------------------------------------------------------------------------

ERRORS: list[tuple[str, list[str], bool, str]] = [
    ("unknown-index", ["show", "999999"], True, "no audit record at index 999999"),
    ("proof-unknown-index", ["proof", "--index", "999999"], True, "error: "),
    ("no-lab-or-endpoint", ["head"], False, "give --endpoint HOST:PORT or --lab DIR"),
    ("unknown-kind", ["query", "--kind", "memo"], True, "unknown kind 'memo'"),
    ("bad-time", ["query", "--since", "yesterday"], True, "not an ISO-8601 time"),
    ("missing-bundle", ["verify-bundle", "/nonexistent/bundle.json"], False, "no bundle file"),
    ("head-size-never-signed", ["verify", "--from-size", "999999"], True, "error: "),
]


@pytest.mark.parametrize(("argv", "lab_opt", "message"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_errors_are_one_line_exit_2(
    run: Run, traffic: Traffic, argv: list[str], lab_opt: bool, message: str
) -> None:
    code, _, err = run(argv[0], *argv[1:], lab_opt=lab_opt)
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("error: ")
    assert message in err


# --- as a user runs it ---------------------------------------------------------------


def test_subprocess_tail_sees_a_new_record_live(lab: Lab, audit: AuditClient, traffic: Traffic) -> None:
    start = audit.size()
    proc = subprocess.Popen(
        [
            str(LIAISON),
            "audit",
            "tail",
            "--lab",
            str(lab.root),
            "--from",
            str(start),
            "--wait",
            "5",
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with Client.from_lab(lab.root, TJ) as client:
            sent = client.send_case_message([RU], case_id="CASE-AUDIT-TAIL", text="live").message_id
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    rows = _lines(out)
    assert rows[0]["index"] == start
    assert sent in {r["message_id"] for r in rows}
    head = subprocess.run(
        [str(LIAISON), "audit", "head", "--lab", str(lab.root), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(head.stdout)["size"] >= start + 1
