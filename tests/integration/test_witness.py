"""The witness process: co-signs an honest gateway, raises a standing alarm on a rewritten log.

Part 1 drives :class:`gateway.witness.runner.Witness` against an in-memory
gateway (real keys, real directory, real state file) to pin the shell's
rules: co-sign once per head, persist atomically, a sticky alarm, clearing.
Part 2 runs ``liaison witness serve`` as a real process against a lab, then
tampers with the gateway's SQLite audit store (truncation; an altered record
with every hash recomputed) and checks the witness refuses and alarms.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from exchange.client.sdk import Client
from exchange.core.directory import DirectoryState
from exchange.core.errors import ConfigError, NotFoundError, RemoteError
from exchange.core.identity import OfficeIdentity
from exchange.core.model import Suite
from exchange.runtime.dirstore import DirectoryFolder
from exchange.runtime.lifecycle import load_directory
from gateway.audit.codec import decode_record, encode_record, encode_tree_head
from gateway.audit.merkle import EMPTY_ROOT, leaf_hash
from gateway.audit.tree import Frontier, MemoryTree, root_at
from gateway.audit.tree import consistency_proof as memory_consistency_proof
from gateway.audit.tree import inclusion_proof as memory_inclusion_proof
from gateway.audit.treehead import Cosignature, SignedTreeHead, TreeHead, sign_tree_head, verify_cosignature
from gateway.client import AuditClient
from gateway.witness.checks import Pin
from gateway.witness.runner import Witness, WitnessConfig, load_state, load_witness_config
from keys.deployment import Deployment, create_deployment, load_inventory
from keys.keystore import open_keystore, passphrase_from
from liaison.cli import main
from liaison.lab.lab import Lab
from liaison.serve.witness import clear_alarm, open_witness_key, save_state
from tests.integration.labutil import INVENTORY, directory, wait_for

WITNESS = "tj-embassy-moscow"
GATEWAY = "embassy-gateway"
RU, TJ = "ru-mvd-dushanbe", "tj-mvd-moscow"

# --- part 1: the runner against an in-memory gateway ----------------------------------------


class FakeGateway:
    """What AuditClient offers the witness, over a MemoryTree; ``down`` makes every call fail."""

    def __init__(self, identity: OfficeIdentity, directory: DirectoryState, directory_bytes: bytes) -> None:
        self.identity, self.dir, self.directory_bytes = identity, directory, directory_bytes
        self.tree = MemoryTree()
        self.clock = 1_000
        self.heads: dict[int, SignedTreeHead] = {}
        self.cosignatures: dict[int, dict[str, Cosignature]] = {}
        self.cosign_calls = 0
        self.down = False
        self.entries: list[bytes] = []

    def _up(self) -> None:
        if self.down:
            raise RemoteError("UNAVAILABLE", "connection refused")

    def append(self, n: int, tag: str = "r") -> None:
        new = [f"{tag}{self.tree.size}-{i}".encode() for i in range(n)]
        self.tree.append_entries(new)
        self.entries += new

    def record(self, index: int) -> Any:
        self._up()
        if not 0 <= index < len(self.entries):
            raise NotFoundError(f"no record {index}")
        return dataclasses.make_dataclass("Logged", ["index", "entry"])(index, self.entries[index])

    def inclusion_proof(self, index: int, size: int) -> tuple[list[bytes], bytes]:
        self._up()
        return memory_inclusion_proof(index, size, self.tree), root_at(size, self.tree)

    def tree_head(self, size: int = 0) -> SignedTreeHead:
        self._up()
        size = size or self.tree.size
        if size not in self.heads:
            self.clock += 1000
            h = TreeHead(size, root_at(size, self.tree), self.clock, GATEWAY)
            data = encode_tree_head(h)
            self.heads[size] = SignedTreeHead(
                h, data, sign_tree_head(h, data, self.identity.signing_keys(Suite.HYBRID_PQ))
            )
        cosigs = tuple(self.cosignatures.get(size, {}).values())
        return dataclasses.replace(self.heads[size], cosignatures=cosigs)

    def consistency_proof(self, m: int, n: int) -> list[bytes]:
        self._up()
        return memory_consistency_proof(m, n, self.tree)

    def add_cosignature(self, size: int, cosignature: Cosignature) -> None:
        self._up()
        if size not in self.heads:
            raise NotFoundError(f"no head {size}")
        verify_cosignature(self.heads[size], cosignature, self.dir.directory)
        self.cosign_calls += 1
        self.cosignatures.setdefault(size, {})[cosignature.witness] = cosignature

    def directory(self) -> bytes:
        self._up()
        return self.directory_bytes

    def rewrite(self, entries: list[bytes]) -> None:
        """Replace the log (a rewriting gateway); heads for the new sizes are signed afresh."""
        self.tree = MemoryTree()
        self.tree.append_entries(entries)
        self.entries = list(entries)
        self.heads = {}
        self.cosignatures = {}


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Deployment:
    root = tmp_path_factory.mktemp("deployment")
    return create_deployment(
        load_inventory(INVENTORY), root, b"witness-test-passphrase", int(time.time() * 1000)
    )


@pytest.fixture
def rig(deployment: Deployment, tmp_path: Path) -> tuple[Witness, FakeGateway, WitnessConfig]:
    d = deployment
    cfg = WitnessConfig(
        witness=WITNESS,
        state=tmp_path / "witness.json",
        keys_dir=d.keys_dir(WITNESS),
        passphrase_file=d.passphrase_file,
        endpoint="unused:0",
        directory=d.directory_file,
        pin=Pin(0, EMPTY_ROOT),  # the fake log starts empty, and this witness saw it so
        max_age_ms=2**62,  # the fake gateway's clock starts at 1970 + 1 s
    )
    state = load_directory(d.directory_file)
    gateway_identity = open_keystore(d.keys_dir(GATEWAY), passphrase_from(d.passphrase_file))
    fake = FakeGateway(gateway_identity, state, d.directory_file.read_bytes())
    witness = Witness(cfg, fake, state, open_witness_key(cfg, state), save_state=save_state)  # type: ignore[arg-type]
    return witness, fake, cfg


def test_an_adopted_directory_survives_a_witness_restart(
    deployment: Deployment, rig: tuple[Witness, FakeGateway, WitnessConfig], tmp_path: Path
) -> None:
    """The witness saves each directory it adopts; a restart starts from it, not the pinned file.

    Before the fix (issue 11, section 4, found by reading): the witness saved no
    directory and ``serve_witness`` loaded the pinned file alone, so a restarted
    witness was back on the pinned version.
    """
    witness, fake, cfg = rig
    d = deployment
    source, draft, out = tmp_path / "v1.pb", tmp_path / "v2.json", tmp_path / "v2.pb"
    source.write_bytes(d.directory_file.read_bytes())
    assert main(["directory", "next-version", "--from", str(source), "--out", str(draft)]) == 0
    signing = draft
    for authority in ("ru-embassy-dushanbe", "tj-embassy-moscow"):
        argv = ["directory", "sign", "--file", str(signing), "--authority", authority]
        argv += ["--keys", str(d.keys_dir(authority)), "--passphrase-file", str(d.passphrase_file)]
        assert main([*argv, "--out", str(out)]) == 0
        signing = out
    copies = DirectoryFolder(cfg.state.parent / "directories")
    restarted = Witness(
        cfg,
        fake,
        load_directory(cfg.directory),
        witness.key,
        save_state=save_state,
        save_directory=copies.save,
    )  # type: ignore[arg-type]
    fake.directory_bytes = out.read_bytes()
    restarted.refresh_directory()
    assert restarted.directory.directory.version == 2
    # What serve_witness does at start: the pinned file, moved forward through the copies.
    assert load_directory(cfg.directory, copies.stored()).directory.version == 2


def test_cosigns_each_new_head_once_and_persists(rig: tuple[Witness, FakeGateway, WitnessConfig]) -> None:
    witness, fake, cfg = rig
    fake.append(5)
    witness.round()
    assert fake.cosign_calls == 1
    assert load_state(cfg.state, WITNESS).last is not None
    witness.round()  # nothing new: no second signature
    assert fake.cosign_calls == 1
    fake.append(7)
    witness.round()
    state = load_state(cfg.state, WITNESS)
    assert state.last is not None
    assert (state.last.size, state.last.root) == (12, fake.tree.root())
    assert state.alarm is None
    assert fake.cosign_calls == 2
    head = fake.tree_head()
    assert [c.witness for c in head.cosignatures] == [WITNESS]


def test_cosigns_again_when_the_gateway_lost_the_cosignature(
    rig: tuple[Witness, FakeGateway, WitnessConfig],
) -> None:
    witness, fake, _ = rig
    fake.append(3)
    witness.round()
    fake.cosignatures.clear()
    witness.round()
    assert fake.cosign_calls == 2
    assert fake.tree_head().cosignatures


def test_unreachable_gateway_changes_nothing(rig: tuple[Witness, FakeGateway, WitnessConfig]) -> None:
    witness, fake, cfg = rig
    fake.append(3)
    witness.round()
    before = cfg.state.read_bytes()
    fake.down = True
    fake.append(3)
    with pytest.raises(RemoteError):
        witness.round()
    assert cfg.state.read_bytes() == before
    fake.down = False
    witness.round()
    assert load_state(cfg.state, WITNESS).last.size == 6  # type: ignore[union-attr]


def test_alarm_is_sticky_until_cleared(rig: tuple[Witness, FakeGateway, WitnessConfig]) -> None:
    witness, fake, cfg = rig
    fake.append(10)
    witness.round()
    honest = fake.tree_head()
    fake.rewrite([f"r0-{i}".encode() for i in range(6)])  # truncated to 6
    witness.round()
    state = load_state(cfg.state, WITNESS)
    assert state.alarm is not None
    assert state.alarm.kind == "truncation"
    assert state.alarm.size == 6
    assert state.last is not None
    assert state.last.size == 10  # the co-signed head is kept as the reference
    calls = fake.cosign_calls
    fake.append(2)  # more heads: still refused
    witness.round()
    witness.round()
    assert fake.cosign_calls == calls
    assert load_state(cfg.state, WITNESS).alarm == state.alarm

    _, kept = clear_alarm(cfg.state, WITNESS)  # the log is still short: the next round alarms again
    assert kept is not None
    assert json.loads(kept.read_text())["alarm"]["kind"] == "truncation"  # evidence kept
    assert load_state(cfg.state, WITNESS).alarm is None
    witness.round()
    assert load_state(cfg.state, WITNESS).alarm is not None
    assert fake.cosign_calls == calls

    clear_alarm(cfg.state, WITNESS, forget_head=True)  # operator accepts the new log
    witness.round()
    state = load_state(cfg.state, WITNESS)
    assert state.alarm is None
    assert state.last is not None
    assert state.last.size == 8
    assert fake.cosign_calls == calls + 1
    assert honest.tree_head.size == 10


def test_rewritten_record_is_an_inconsistent_history_alarm(
    rig: tuple[Witness, FakeGateway, WitnessConfig],
) -> None:
    witness, fake, cfg = rig
    fake.append(9)
    witness.round()
    entries = [f"r0-{i}".encode() for i in range(9)]
    entries[2] = b"back-dated"
    fake.rewrite([*entries, b"more"])
    witness.round()
    alarm = load_state(cfg.state, WITNESS).alarm
    assert alarm is not None
    assert alarm.kind == "inconsistent-history"


VALID_CONFIG = (
    '[witness]\nid = "tj-embassy-moscow"\ninterval_s = 0.5\n'
    '[keys]\ndir = "keys"\n[gateway]\nendpoint = "127.0.0.1:1"\n[directory]\nfile = "directory.pb"\n'
)
CONFIG_ERRORS = {
    "no-witness-section": (VALID_CONFIG.replace("[witness]", "[witnesses]"), "section [witness] is missing"),
    "no-directory-section": (VALID_CONFIG.replace("[directory]", "[dir]"), "section [directory] is missing"),
    "no-gateway-endpoint": (VALID_CONFIG.replace("endpoint =", "address ="), "[gateway] endpoint is missing"),
    "bad-witness-id": (VALID_CONFIG.replace("tj-embassy-moscow", "Not An Id"), "[witness] id"),
    "zero-interval": (VALID_CONFIG.replace("0.5", "0"), "[witness] interval_s must be a positive number"),
    "interval-is-text": (VALID_CONFIG.replace("0.5", '"2"'), "[witness] interval_s"),
    "not-toml": ("[witness\n", "not valid TOML"),
}


@pytest.mark.parametrize(("text", "needle"), CONFIG_ERRORS.values(), ids=CONFIG_ERRORS.keys())
def test_bad_config_is_one_line_error(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "witness.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_witness_config(path)
    assert needle in str(info.value)


def test_config_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    path = tmp_path / "w" / "witness.toml"
    path.parent.mkdir()
    path.write_text(
        '[witness]\nid = "tj-embassy-moscow"\n[keys]\ndir = "keys"\n[gateway]\nendpoint = "127.0.0.1:1"\n'
        '[directory]\nfile = "directory.pb"\n[tls]\nca = "ca.pem"\ncert = "c.pem"\nkey = "k.pem"\n'
    )
    cfg = load_witness_config(path)
    assert cfg.state == path.parent / "witness.json"
    assert cfg.keys_dir == path.parent / "keys"
    assert cfg.passphrase_file is None
    assert cfg.interval_s == 2.0
    assert cfg.tls is not None
    assert cfg.tls.ca == path.parent / "ca.pem"


STATE_ERRORS = {
    "not-json": "{",
    "wrong-format": '{"format": "other", "witness": "tj-embassy-moscow"}',
    "other-witness": '{"format": "liaison-witness-state-v1", "witness": "ru-embassy-dushanbe"}',
    "bad-root": '{"format": "liaison-witness-state-v1", "witness": "tj-embassy-moscow", '
    '"last": {"gateway": "g", "size": 1, "root": "zz", "timestamp_ms": 1}}',
}


@pytest.mark.parametrize("text", STATE_ERRORS.values(), ids=STATE_ERRORS.keys())
def test_damaged_state_file_is_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "witness.json"
    path.write_text(text)
    with pytest.raises(ConfigError):
        load_state(path, WITNESS)


# --- part 2: the real process against a lab whose store is tampered with ----------------------


@dataclasses.dataclass
class RunningWitness:
    config: Path
    log: Path
    proc: subprocess.Popen[bytes]

    def events(self, name: str) -> list[dict[str, Any]]:
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if doc.get("event") == name:
                out.append(doc)
        return out

    def status(self, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
        capsys.readouterr()
        code = main(["witness", "status", "--config", str(self.config), "--json"])
        return code, json.loads(capsys.readouterr().out)


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    with Lab(tmp_path / "lab", inventory=INVENTORY) as lab:
        yield lab


def init_witness(lab: Lab, folder: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """``liaison witness init`` for the lab; returns the config path it printed."""
    capsys.readouterr()
    assert main(["audit", "head", "--lab", str(lab.root), "--json"]) == 0
    head = folder.parent / f"{folder.name}-head.json"  # the head the operator confirmed
    head.write_text(capsys.readouterr().out)
    argv = ["witness", "init", "--dir", str(folder), "--lab", str(lab.root), "--authority", WITNESS]
    assert main([*argv, "--interval", "0.2", "--head", str(head)]) == 0
    return Path(capsys.readouterr().out.strip())


def spawn_witness(config: Path) -> RunningWitness:
    """``liaison witness serve`` as a real process, logging JSON lines next to its config."""
    log = config.parent / "witness.log"
    with log.open("ab") as f:
        proc = subprocess.Popen(
            [sys.executable, "-m", "liaison.cli", "witness", "serve", "--config", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=f,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return RunningWitness(config, log, proc)


def stop_witness(w: RunningWitness) -> None:
    if w.proc.poll() is None:
        w.proc.terminate()
        try:
            w.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            w.proc.kill()
            w.proc.wait(timeout=10)


@pytest.fixture
def witness_dir(tmp_path: Path) -> Path:
    return tmp_path / "witness"


def log_size(lab: Lab) -> int:
    with AuditClient.from_lab(lab.root) as audit:
        return audit.tree_head().tree_head.size


def traffic(lab: Lab, n: int, tag: str) -> None:
    """Send ``n`` case messages; return once their records (accepted + delivered) are all logged."""
    before = log_size(lab)
    client = Client.from_lab(lab.root, RU)
    try:
        for i in range(n):
            client.send_case_message([TJ], case_id=f"WITNESS-{tag}", text=f"message {i}")
    finally:
        client.close()
    wait_for(lambda: log_size(lab) >= before + 2 * n, what=f"{2 * n} new audit records")
    sizes = [log_size(lab)]
    while True:  # settled: no late receipt still on its way (bounded by wait_for's own deadline)
        time.sleep(0.5)
        sizes.append(log_size(lab))
        if sizes[-1] == sizes[-2]:
            return
        assert len(sizes) < 20, "the audit log kept growing"


def wait_cosigned(lab: Lab) -> SignedTreeHead:
    """The current head once the witness co-signed it (and the cosignature verifies)."""
    found: list[SignedTreeHead] = []

    def cosigned() -> bool:
        with AuditClient.from_lab(lab.root) as audit:
            head = audit.tree_head()
        mine = [c for c in head.cosignatures if c.witness == WITNESS]
        if mine:
            verify_cosignature(head, mine[0], directory(lab))
            found.append(head)
        return bool(mine)

    wait_for(cosigned, what="the witness to co-sign the current head")
    return found[-1]


def audit_db(lab: Lab) -> Path:
    return lab.root / "nodes" / "gateway" / "audit.db"


def truncate_store(db: Path, keep: int) -> None:
    """Delete entries from ``keep`` on, every node that covers them, and later heads."""
    with sqlite3.connect(db) as con:
        con.execute("DELETE FROM entries WHERE idx >= ?", [keep])
        con.execute("DELETE FROM nodes WHERE ((idx + 1) << level) > ?", [keep])
        con.execute("DELETE FROM tree_heads WHERE size > ?", [keep])
        con.execute("DELETE FROM cosignatures WHERE size > ?", [keep])
    con.close()


def rewrite_record(db: Path, index: int) -> None:
    """Back-date one record and recompute its leaf hash and every node: a consistent rewrite."""
    with sqlite3.connect(db) as con:
        (entry,) = con.execute("SELECT entry FROM entries WHERE idx = ?", [index]).fetchone()
        record = decode_record(bytes(entry))
        altered = encode_record(dataclasses.replace(record, at_ms=record.at_ms - 3_600_000))
        con.execute(
            "UPDATE entries SET entry = ?, leaf_hash = ?, at_ms = ? WHERE idx = ?",
            [altered, leaf_hash(altered), record.at_ms - 3_600_000, index],
        )
        leaves = [bytes(h) for (h,) in con.execute("SELECT leaf_hash FROM entries ORDER BY idx")]
        _, created = Frontier.empty().append(leaves)
        con.execute("DELETE FROM nodes")
        con.executemany(
            "INSERT INTO nodes (level, idx, hash) VALUES (?, ?, ?)",
            [(k[0], k[1], h) for k, h in created if k[0] > 0],
        )
        con.execute("DELETE FROM tree_heads")  # old heads would contradict the new roots
        con.execute("DELETE FROM cosignatures")
    con.close()


def test_truncated_log_raises_a_standing_alarm(
    lab: Lab, witness_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    w = spawn_witness(init_witness(lab, witness_dir, capsys))
    try:
        traffic(lab, 4, "before")
        cosigned = wait_cosigned(lab)
        code, status = w.status(capsys)
        assert code == 0
        assert status["alarm"] is None
        assert status["last"]["size"] == cosigned.tree_head.size
        assert status["last"]["root"] == cosigned.tree_head.root.hex()

        lab.gateway.stop()
        keep = cosigned.tree_head.size - 3
        truncate_store(audit_db(lab), keep)
        lab.start_node("gateway")  # the witness kept running and reconnects

        wait_for(lambda: w.status(capsys)[1]["alarm"] is not None, what="the witness alarm")
        code, status = w.status(capsys)
        assert code == 1
        assert status["alarm"]["kind"] == "truncation"
        assert status["alarm"]["size"] == keep
        assert status["last"]["size"] == cosigned.tree_head.size  # the reference is kept
        assert any(e["kind"] == "truncation" and e["level"] == "error" for e in w.events("witness_alarm"))
        assert w.events("witness_gateway_unreachable")

        traffic(lab, 2, "after")  # new heads are signed, none is co-signed
        time.sleep(1.5)
        with AuditClient.from_lab(lab.root) as audit:
            head = audit.tree_head()
        assert head.tree_head.size > keep
        assert not head.cosignatures
        assert w.proc.poll() is None  # still running, still reporting
        assert w.status(capsys)[1]["alarm"]["kind"] == "truncation"

        # The operator accepts the new log: forget the old head; co-signing resumes.
        assert main(["witness", "clear", "--config", str(w.config), "--forget-head"]) == 0
        resumed = wait_cosigned(lab)
        assert resumed.tree_head.size >= head.tree_head.size
        assert w.status(capsys)[0] == 0
    finally:
        stop_witness(w)


def test_rewritten_record_is_detected_by_the_consistency_check(
    lab: Lab, witness_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    w = spawn_witness(init_witness(lab, witness_dir, capsys))
    try:
        traffic(lab, 3, "before")
        cosigned = wait_cosigned(lab)
        stop_witness(w)  # the witness is offline while the gateway rewrites its past

        lab.gateway.stop()
        rewrite_record(audit_db(lab), 1)
        lab.start_node("gateway")
        traffic(lab, 2, "after")
        with AuditClient.from_lab(lab.root) as audit:
            rewritten = audit.tree_head()
        assert rewritten.tree_head.size > cosigned.tree_head.size
        # The rewrite is self-consistent: only the co-signed head contradicts it.
        assert rewritten.tree_head.root != cosigned.tree_head.root

        w = spawn_witness(w.config)  # back online: same config, same state file
        wait_for(lambda: w.status(capsys)[1]["alarm"] is not None, what="the witness alarm")
        status = w.status(capsys)[1]
        assert status["alarm"]["kind"] == "inconsistent-history"
        assert status["last"]["size"] == cosigned.tree_head.size
        assert w.events("witness_alarm")

        traffic(lab, 1, "later")
        time.sleep(1.5)
        with AuditClient.from_lab(lab.root) as audit:
            assert not audit.tree_head().cosignatures
    finally:
        stop_witness(w)
