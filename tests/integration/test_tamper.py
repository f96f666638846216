"""Tamper with the gateway's SQLite audit store: `liaison audit verify` and the witness must notice.

One lab per module. After honest traffic the operator saves the current
signed head (``liaison audit head --json > head.json``) and the witness (its
one-round API, :meth:`gateway.witness.runner.Witness.round`: the code
``liaison witness serve`` loops over) co-signs that same head. The gateway
is stopped and its store copied (the *pristine* log). Then, per tamper kind:
stop the gateway, put the pristine store back, tamper with ``audit.db``
through sqlite3, restart the gateway, send more traffic, and check

- ``liaison audit verify --lab DIR --known-head head.json`` exits 1 with a
  ``FAILED:`` line naming the problem, and
- the witness, given one round, refuses to co-sign and raises its alarm
  (``liaison witness status --json`` exits 1 and names the alarm kind).

The witness is offline during the tamper, restart and new traffic, so the
log it sees next has already grown past its co-signed size: a truncation
must then be caught by the consistency proof, not by the size check.

Kinds (ids are the parameter ids):

``edit-in-place``
    one record's bytes re-encoded with an earlier time; leaf hash and nodes
    left alone (a clumsy forger, or disk corruption).
``edit-and-rehash``
    the same edit, then its leaf hash and every node recomputed, and the
    stored heads that covered it (and their co-signatures) deleted: a
    self-consistent rewritten log (a careful forger).
``delete-and-shift``
    one record removed and every later record moved down one index, all
    hashes recomputed, later heads deleted: the log stays contiguous and
    self-consistent, the record never existed. This is the variant that
    hides a message, so it is the delete the acceptance is about.
``delete-leaving-gap``
    the row deleted and nothing else (the naive variant, kept to show who
    notices it).
``truncate-and-regrow``
    the last records, their nodes, heads and co-signatures deleted, then the
    log grown back past the co-signed size with new traffic.

``untampered`` is the control: the same restore/restart/traffic cycle must
leave both checks green, or the other cases would prove nothing.

A store whose *served* records differ from the hashes it commits to
(``edit-in-place``, ``delete-leaving-gap``) keeps its heads and proofs
consistent; the witness catches it by checking that every new record, and a
random sample of older ones, is served and proves into the signed root.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from exchange.client.sdk import Client
from exchange.runtime.lifecycle import load_directory
from gateway.audit.codec import decode_record, encode_record
from gateway.audit.merkle import leaf_hash
from gateway.audit.tree import Frontier
from gateway.client import AuditClient
from gateway.witness.runner import Witness, load_state, load_witness_config
from liaison.cli import main
from liaison.lab.lab import Lab
from liaison.serve.witness import open_witness_key, save_state
from tests.integration.labutil import INVENTORY, wait_for

pytestmark = pytest.mark.slow

WITNESS = "tj-embassy-moscow"
RU, TJ = "ru-mvd-dushanbe", "tj-mvd-moscow"
BASE_MESSAGES = 4  # honest traffic before the saved head: 8 records (acceptance + receipt each)
MORE_MESSAGES = 3  # traffic after the tamper: 6 records, more than the truncation removes
TARGET = 2  # the record edited or deleted (inside the co-signed log)
TRUNCATE = 3  # records removed by the truncation


# --- running things ------------------------------------------------------------------------


def cli(*argv: str) -> tuple[int, str]:
    """``liaison ARGV`` in-process: (exit code, stdout)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(list(argv))
    return code, out.getvalue()


def log_size(lab: Lab) -> int:
    with AuditClient.from_lab(lab.root) as audit:
        return audit.size()


def traffic(lab: Lab, n: int, tag: str) -> int:
    """Send ``n`` case messages; return the log size once their records are in and it stopped growing."""
    before = log_size(lab)
    client = Client.from_lab(lab.root, RU)
    try:
        for i in range(n):
            client.send_case_message([TJ], case_id=f"TAMPER-{tag}", text=f"message {i}")
    finally:
        client.close()
    wait_for(lambda: log_size(lab) >= before + 2 * n, what=f"{2 * n} new audit records")
    sizes = [log_size(lab)]
    while True:  # settled: no late receipt still on its way (at most 20 half-second steps)
        time.sleep(0.5)
        sizes.append(log_size(lab))
        if sizes[-1] == sizes[-2]:
            return sizes[-1]
        assert len(sizes) < 20, "the audit log kept growing"


def witness_round(config: Path) -> None:
    """One round of the witness (fetch head, check consistency, co-sign or alarm), in-process."""
    cfg = load_witness_config(config)
    directory = load_directory(cfg.directory)
    key = open_witness_key(cfg, directory)
    with AuditClient(cfg.endpoint, tls=cfg.tls, timeout=cfg.timeout_s) as client:
        Witness(cfg, client, directory, key, save_state=save_state).round()


def witness_status(config: Path) -> tuple[int, dict[str, Any]]:
    code, out = cli("witness", "status", "--config", str(config), "--json")
    return code, json.loads(out)


def copy_db(src: Path, dst: Path) -> None:
    """A consistent copy of a (stopped) WAL-mode SQLite database, through SQLite's backup API."""
    with contextlib.closing(sqlite3.connect(src)) as s, contextlib.closing(sqlite3.connect(dst)) as d:
        s.backup(d)


# --- the tampering (each gets the store and the co-signed size) -----------------------------


def _back_dated(entry: bytes) -> tuple[bytes, int]:
    record = decode_record(entry)
    at_ms = record.at_ms - 3_600_000
    return encode_record(dataclasses.replace(record, at_ms=at_ms)), at_ms


def _rows(con: sqlite3.Connection) -> list[list[Any]]:
    return [list(r) for r in con.execute("SELECT * FROM entries ORDER BY idx")]


def _rewrite_consistently(con: sqlite3.Connection, rows: list[list[Any]], first_changed: int) -> None:
    """Store ``rows`` (renumbered 0..) with fresh leaf hashes and nodes; drop heads that covered a change."""
    columns = [d[0] for d in con.execute("SELECT * FROM entries LIMIT 0").description]
    entry, leaf, idx = columns.index("entry"), columns.index("leaf_hash"), columns.index("idx")
    for i, row in enumerate(rows):
        row[idx], row[leaf] = i, leaf_hash(bytes(row[entry]))
    con.execute("DELETE FROM entries")
    marks = ", ".join("?" * len(columns))
    con.executemany(f"INSERT INTO entries ({', '.join(columns)}) VALUES ({marks})", rows)
    _, created = Frontier.empty().append(bytes(r[leaf]) for r in rows)
    con.execute("DELETE FROM nodes")
    con.executemany(
        "INSERT INTO nodes (level, idx, hash) VALUES (?, ?, ?)",
        [(k[0], k[1], h) for k, h in created if k[0] > 0],
    )
    # Heads up to the change still hold; later ones would contradict the new roots.
    con.execute("DELETE FROM tree_heads WHERE size > ?", [first_changed])
    con.execute("DELETE FROM cosignatures WHERE size > ?", [first_changed])


def edit_in_place(con: sqlite3.Connection, cosigned: int) -> None:
    (entry,) = con.execute("SELECT entry FROM entries WHERE idx = ?", [TARGET]).fetchone()
    altered, at_ms = _back_dated(bytes(entry))
    con.execute("UPDATE entries SET entry = ?, at_ms = ? WHERE idx = ?", [altered, at_ms, TARGET])


def edit_and_rehash(con: sqlite3.Connection, cosigned: int) -> None:
    rows = _rows(con)
    rows[TARGET][1], rows[TARGET][3] = _back_dated(bytes(rows[TARGET][1]))
    _rewrite_consistently(con, rows, TARGET)


def delete_and_shift(con: sqlite3.Connection, cosigned: int) -> None:
    rows = _rows(con)
    del rows[TARGET]
    _rewrite_consistently(con, rows, TARGET)


def delete_leaving_gap(con: sqlite3.Connection, cosigned: int) -> None:
    con.execute("DELETE FROM entries WHERE idx = ?", [TARGET])


def truncate(con: sqlite3.Connection, cosigned: int) -> None:
    keep = cosigned - TRUNCATE
    con.execute("DELETE FROM entries WHERE idx >= ?", [keep])
    con.execute("DELETE FROM nodes WHERE ((idx + 1) << level) > ?", [keep])
    con.execute("DELETE FROM tree_heads WHERE size > ?", [keep])
    con.execute("DELETE FROM cosignatures WHERE size > ?", [keep])


def untouched(con: sqlite3.Connection, cosigned: int) -> None:
    pass


@dataclasses.dataclass(frozen=True)
class Tamper:
    change: Callable[[sqlite3.Connection, int], None]
    verify_says: str  # in the FAILED line; "{cosigned}" is the co-signed (saved) size
    witness_says: str | None  # the alarm kind; None: the witness co-signs (the control)


ROOT_MISMATCH = "do not hash to the signed root of tree size"
TAMPERS = {
    "untampered": Tamper(untouched, "", None),
    "edit-in-place": Tamper(edit_in_place, ROOT_MISMATCH, "altered-record"),
    "edit-and-rehash": Tamper(edit_and_rehash, ROOT_MISMATCH + " {cosigned}", "inconsistent-history"),
    "delete-and-shift": Tamper(delete_and_shift, ROOT_MISMATCH + " {cosigned}", "inconsistent-history"),
    "delete-leaving-gap": Tamper(
        delete_leaving_gap, f"log entries are not contiguous: expected index {TARGET}", "missing-record"
    ),
    "truncate-and-regrow": Tamper(truncate, ROOT_MISMATCH + " {cosigned}", "inconsistent-history"),
}


class WitnessMissedTamperError(AssertionError):
    """The witness co-signed a head of the tampered log."""


def _witness_param(kind: str) -> Any:
    return pytest.param(kind, id=kind)


# --- fixtures --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Base:
    lab: Lab
    head_file: Path  # `liaison audit head --json` of the co-signed size
    cosigned: int
    witness_config: Path
    pristine_db: Path
    pristine_state: Path

    @property
    def db(self) -> Path:
        return self.lab.root / "nodes" / "gateway" / "audit.db"

    @property
    def witness_state(self) -> Path:
        return self.witness_config.parent / "witness.json"


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Base]:
    root = tmp_path_factory.mktemp("tamper")
    with Lab(root / "lab", inventory=INVENTORY) as lab:
        traffic(lab, BASE_MESSAGES, "base")
        code, out = cli("audit", "head", "--lab", str(lab.root), "--json")
        assert code == 0
        (root / "first-head.json").write_text(out)  # the head the operator confirmed
        code, out = cli("witness", "init", "--dir", str(root / "witness"), "--lab", str(lab.root),
                        "--authority", WITNESS, "--head", str(root / "first-head.json"))  # fmt: skip
        assert code == 0
        config = Path(out.strip())
        witness_round(config)
        last = load_state(config.parent / "witness.json", WITNESS).last
        assert last is not None
        code, out = cli("audit", "head", "--lab", str(lab.root), "--json")
        assert code == 0
        head = json.loads(out)
        assert (head["size"], head["root"]) == (last.size, last.root.hex())  # the saved head is co-signed
        assert last.size > TRUNCATE + TARGET
        head_file = root / "head.json"
        head_file.write_text(out)
        base = Base(lab, head_file, last.size, config, root / "pristine.db", root / "pristine-witness.json")
        lab.gateway.stop()
        copy_db(base.db, base.pristine_db)
        shutil.copyfile(base.witness_state, base.pristine_state)
        lab.start_node("gateway")
        yield base


@dataclasses.dataclass(frozen=True)
class Tampered:
    base: Base
    kind: str
    size: int  # the log size after the new traffic


@pytest.fixture(scope="module")
def tampered(base: Base, request: pytest.FixtureRequest) -> Tampered:
    """The pristine log put back, tampered with as ``request.param`` says, then grown by new traffic."""
    kind: str = request.param
    lab = base.lab
    lab.gateway.stop()
    copy_db(base.pristine_db, base.db)
    shutil.copyfile(base.pristine_state, base.witness_state)
    with contextlib.closing(sqlite3.connect(base.db)) as con, con:
        TAMPERS[kind].change(con, base.cosigned)
    lab.start_node("gateway")
    size = traffic(lab, MORE_MESSAGES, kind)
    assert size > base.cosigned  # grown past the co-signed head: the size check alone cannot tell
    return Tampered(base, kind, size)


# --- the checks -------------------------------------------------------------------------------


@pytest.mark.parametrize("tampered", TAMPERS, indirect=True)
def test_audit_verify_detects(tampered: Tampered) -> None:
    b, tamper = tampered.base, TAMPERS[tampered.kind]
    code, out = cli("audit", "verify", "--lab", str(b.lab.root), "--known-head", str(b.head_file))
    assert len(out.splitlines()) == 1, out
    if tamper.witness_says is None:
        assert code == 0, out
        assert out.startswith(f"OK: {tampered.size} records verified"), out
        return
    assert code == 1, out
    assert out.startswith("FAILED: "), out
    assert tamper.verify_says.format(cosigned=b.cosigned) in out, out


@pytest.mark.parametrize("tampered", [_witness_param(k) for k in TAMPERS], indirect=True)
def test_witness_detects(tampered: Tampered) -> None:
    b, tamper = tampered.base, TAMPERS[tampered.kind]
    witness_round(b.witness_config)
    code, status = witness_status(b.witness_config)
    if tamper.witness_says is None:
        assert code == 0
        assert status["alarm"] is None
        assert status["last"]["size"] == tampered.size  # co-signed the grown log
        return
    if code == 0 and status["alarm"] is None:
        raise WitnessMissedTamperError(
            f"the witness co-signed size {status['last']['size']} of the tampered log"
        )
    assert code == 1
    assert status["alarm"]["kind"] == tamper.witness_says, status["alarm"]
    assert status["alarm"]["size"] == tampered.size
    assert status["last"]["size"] == b.cosigned  # the co-signed head stays the reference
    with AuditClient.from_lab(b.lab.root) as audit:
        assert not audit.tree_head().cosignatures  # nothing co-signed after the tamper
