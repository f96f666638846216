"""The audit log in one SQLite file (WAL, synchronous=FULL): :class:`SQLiteAuditStore`.

The store logic is :class:`gateway.audit.store.SQLAuditStoreBase`; this module
supplies the connections (:func:`exchange.runtime.sqlite.connect`, the
project's one SQLite opener), SQLite's transaction and bulk-insert forms and
its node look-up plan. Tables come from :mod:`gateway.audit.schema`.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any

from exchange.runtime.sqlite import connect
from gateway.audit.schema import ddl
from gateway.audit.store import SQLAuditStoreBase
from gateway.audit.tree import NodeKey

__all__ = ["SQLiteAuditStore"]


class SQLiteAuditStore(SQLAuditStoreBase):
    """The audit log in one SQLite file (WAL, synchronous=FULL)."""

    _db_errors = (sqlite3.Error,)
    _no_index = "+"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__()
        self._w = connect(path)
        try:
            with self._guard("open"):
                self._w.executescript(";\n".join(ddl("sqlite")) + ";")
            self._r = connect(path)
        except BaseException:
            self._w.close()
            raise
        self._load_frontier()

    def _read(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        return self._r.execute(sql, params).fetchall()

    def _write(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        return self._w.execute(sql, params).fetchall()

    @contextlib.contextmanager
    def _write_transaction(self) -> Iterator[None]:
        self._w.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._w.execute("COMMIT")
        except BaseException:
            if self._w.in_transaction:
                self._w.execute("ROLLBACK")
            raise

    def _insert_rows(self, table: str, columns: str, rows: list[tuple[object, ...]]) -> None:
        if not rows:
            return
        marks = ", ".join("?" * len(rows[0]))
        self._w.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", rows)  # noqa: S608

    def _node_rows(self, keys: list[NodeKey]) -> list[tuple[Any, ...]]:
        values = ", ".join("(?, ?)" for _ in keys)
        flat = [v for key in keys for v in key]
        # CTE + CROSS JOIN: SQLite plans one primary-key lookup per key (a row-value IN scans).
        sql = (
            f"WITH k(level, idx) AS (VALUES {values}) "  # noqa: S608
            "SELECT n.level, n.idx, n.hash FROM k CROSS JOIN nodes n ON n.level = k.level AND n.idx = k.idx"
        )
        return self._read(sql, flat)

    def close(self) -> None:
        with self._write_lock, self._read_lock:
            self._w.close()
            self._r.close()
