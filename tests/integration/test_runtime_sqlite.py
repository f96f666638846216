"""The one SQLite opener and the group-commit boundary, on a real SQLite file.

``exchange.runtime.sqlite`` is where SQLite meets the rest of the code: every
``sqlite3.Error`` must come out as :class:`~exchange.core.errors.StoreError`
(with the SQLite error as its cause), and WAL mode must be verified, not assumed.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from exchange.core.errors import DuplicateError, StoreError
from exchange.office.store import Frame, OfficeStore, SentRecord, StatementRecord
from exchange.runtime.sqlite import GroupCommitDB, connect

SCHEMA = "CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY, v TEXT NOT NULL);"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[GroupCommitDB]:
    db = GroupCommitDB(tmp_path / "sub" / "store.db", SCHEMA)
    yield db
    db.close()


def test_connect_sets_wal_and_full_sync(tmp_path: Path) -> None:
    conn = connect(tmp_path / "x.db")
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    finally:
        conn.close()


def test_connect_refuses_a_database_without_wal() -> None:
    # An in-memory database cannot be in WAL mode: SQLite answers "memory".
    with pytest.raises(StoreError, match="refused WAL"):
        connect(":memory:")


def test_connect_maps_an_unopenable_file(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="cannot open") as info:
        connect(tmp_path / "no-such-folder" / "x.db")
    assert isinstance(info.value.__cause__, sqlite3.Error)


def test_bad_schema_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError) as info:
        GroupCommitDB(tmp_path / "bad.db", "CREATE TABLE (;")
    assert isinstance(info.value.__cause__, sqlite3.Error)


async def test_write_maps_a_constraint_violation(db: GroupCommitDB) -> None:
    await db.write(lambda c: c.execute("INSERT INTO t VALUES (1, 'a')").rowcount)
    with pytest.raises(StoreError, match="IntegrityError") as info:
        await db.write(lambda c: c.execute("INSERT INTO t VALUES (1, 'b')").rowcount)
    assert isinstance(info.value.__cause__, sqlite3.IntegrityError)
    # The failed op was rolled back to its savepoint; the earlier write stands.
    assert db.read(lambda c: c.execute("SELECT v FROM t").fetchall()) == [("a",)]


async def test_write_maps_an_operational_error(db: GroupCommitDB) -> None:
    with pytest.raises(StoreError) as info:
        await db.write(lambda c: c.execute("INSERT INTO missing VALUES (1)").rowcount)
    assert isinstance(info.value.__cause__, sqlite3.OperationalError)


async def test_a_project_error_from_an_op_is_passed_through(db: GroupCommitDB) -> None:
    def op(conn: sqlite3.Connection) -> None:
        raise DuplicateError("already there")

    with pytest.raises(DuplicateError):
        await db.write(op)


def test_read_maps_sqlite_errors(db: GroupCommitDB) -> None:
    with pytest.raises(StoreError) as info:
        db.read(lambda c: c.execute("SELECT * FROM missing").fetchall())
    assert isinstance(info.value.__cause__, sqlite3.OperationalError)


async def test_office_store_write_failure_is_a_store_error(tmp_path: Path) -> None:
    """A real SQLite failure inside an office-store write reaches the caller as StoreError."""
    path = tmp_path / "office.db"
    store = OfficeStore(path)
    try:
        # Another connection (an operator, a broken migration) makes the frames table refuse rows.
        with contextlib.closing(sqlite3.connect(path)) as other, other:
            other.execute(
                "CREATE TRIGGER refuse BEFORE INSERT ON frames BEGIN SELECT RAISE(ABORT, 'refused'); END"
            )
        sent = SentRecord("m-1", 1_000, 1, 1, "case-1", ("office-b",), b"\x00" * 32, b"body")
        accepted = StatementRecord("m-1", "", 1, 0, "", 1_000, b"signed")
        with pytest.raises(StoreError) as info:
            await store.record_sent(sent, accepted, Frame("m-1", 1, b"frame"))
        assert isinstance(info.value.__cause__, sqlite3.Error)
        assert store.sent("m-1") is None  # the whole op was rolled back
    finally:
        store.close()


def test_close_waits_for_a_read_still_running_in_a_worker_thread(tmp_path: Path) -> None:
    """A node shutting down cancels the task awaiting a read, not the thread running it.

    Failed before the fix: ``close()`` closed the read connection under the running read
    (here: "Cannot operate on a closed database"; with a statement mid-step, a segmentation
    fault of the whole process, seen in the unit suite).
    """
    db = GroupCommitDB(tmp_path / "store.db", SCHEMA)
    started = threading.Event()

    def slow_read(conn: sqlite3.Connection) -> int:
        started.set()
        time.sleep(0.3)
        return int(conn.execute("SELECT 2").fetchone()[0])

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(db.read, slow_read)
        assert started.wait(5)
        db.close()
        assert pending.result(timeout=5) == 2
    with pytest.raises(StoreError, match="the store is closed"):
        db.read(lambda conn: conn.execute("SELECT 1").fetchone())
