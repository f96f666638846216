"""The audit log on PostgreSQL (psycopg 3), same API and semantics as the SQLite store.

Tables (:mod:`gateway.audit.schema`) live in one PostgreSQL schema (default
``liaison_audit``), created on open; tests give each run its own schema.
Batches are written with ``COPY`` inside one transaction that first takes a
``SHARE ROW EXCLUSIVE`` lock on the entries table, so two gateway processes
cannot fork the tree. One writer and one reader connection, each behind its
own lock; a broken connection surfaces as
:class:`exchange.core.errors.StoreError` (this module does not reconnect).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Sequence
from typing import Any, Final

import psycopg
from psycopg import sql

from exchange.core.errors import ConfigError, StoreError
from gateway.audit.schema import ddl
from gateway.audit.store import SQLAuditStoreBase
from gateway.audit.tree import NodeKey

__all__ = ["DEFAULT_SCHEMA", "PostgresAuditStore"]

DEFAULT_SCHEMA: Final = "liaison_audit"
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _pg(query: str) -> str:
    # The shared SQL uses "?" placeholders and never a literal "%" or "?".
    return query.replace("?", "%s")


class PostgresAuditStore(SQLAuditStoreBase):
    """The audit log in a PostgreSQL schema."""

    _db_errors = (psycopg.Error,)

    def __init__(self, dsn: str, schema: str = DEFAULT_SCHEMA) -> None:
        if not _SCHEMA_NAME.match(schema):
            raise ConfigError(f"schema name {schema!r} is not [a-z_][a-z0-9_]*")
        super().__init__()
        self.schema = schema
        with self._guard("open"):
            self._w = self._connect(dsn, create=True)
            self._r = self._connect(dsn, create=False)
        self._load_frontier()

    def _connect(self, dsn: str, *, create: bool) -> psycopg.Connection[tuple[Any, ...]]:
        try:
            conn = psycopg.connect(dsn, autocommit=True)
        except psycopg.Error as e:
            # The DSN may hold a password: name only the failure class.
            raise StoreError(f"cannot connect to PostgreSQL: {type(e).__name__}") from e
        # Plan each proof query for the log's size now: a generic plan cached while the log
        # was small turned node look-ups into scans as it grew (8.6 ms instead of 0.26 ms).
        conn.execute("SET plan_cache_mode TO force_custom_plan")
        schema = sql.Identifier(self.schema)
        if create:
            with conn.transaction():
                # Serialise concurrent first opens (CREATE ... IF NOT EXISTS races).
                conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [self.schema])
                conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(schema))
                conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(schema))
                for statement in ddl("postgresql"):
                    conn.execute(statement.encode())
        conn.execute(sql.SQL("SET search_path TO {}").format(schema))
        return conn

    def _read(self, query: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        return self._r.execute(_pg(query).encode(), params).fetchall()

    def _write(self, query: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        cur = self._w.execute(_pg(query).encode(), params)
        return cur.fetchall() if cur.description else []

    @contextlib.contextmanager
    def _write_transaction(self) -> Iterator[None]:
        with self._w.transaction():
            self._w.execute("LOCK TABLE entries IN SHARE ROW EXCLUSIVE MODE")
            yield

    def _insert_rows(self, table: str, columns: str, rows: list[tuple[object, ...]]) -> None:
        if not rows:
            return
        copy_sql = f"COPY {table} ({columns}) FROM STDIN"
        with self._w.cursor() as cur, cur.copy(copy_sql.encode()) as copy:
            for row in rows:
                copy.write_row(row)

    def _node_rows(self, keys: list[NodeKey]) -> list[tuple[Any, ...]]:
        levels = [level for level, _ in keys]
        indices = [idx for _, idx in keys]
        return self._r.execute(
            "SELECT n.level, n.idx, n.hash FROM nodes n "
            "JOIN unnest(%s::smallint[], %s::bigint[]) AS k(level, idx) "
            "ON n.level = k.level AND n.idx = k.idx",
            [levels, indices],
        ).fetchall()

    def close(self) -> None:
        with self._write_lock, self._read_lock:
            self._w.close()
            self._r.close()
