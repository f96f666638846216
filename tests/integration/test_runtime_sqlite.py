"""The one SQLite opener and the group-commit boundary, on a real SQLite file.

``exchange.runtime.sqlite`` is where SQLite meets the rest of the code: every
``sqlite3.Error`` must come out as :class:`~exchange.core.errors.StoreError`
(with the SQLite error as its cause), and WAL mode must be verified, not assumed.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from exchange.core.errors import DuplicateError, StoreError
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
