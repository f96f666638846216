"""The audit log's tables and indexes, described once; each engine's DDL is produced from it.

SQLite (:mod:`gateway.audit.sqlite`) and PostgreSQL (:mod:`gateway.audit.postgres`)
must hold the same columns and the same indexes, or a query planned for one
walks the whole log on the other. The only dialect differences are the type
names, and SQLite's ``WITHOUT ROWID`` for the tables keyed by two columns.
What this module does not do: migrations (every statement is ``IF NOT EXISTS``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

__all__ = ["INDEXES", "TABLES", "Column", "Dialect", "Index", "Table", "ddl"]

Dialect = Literal["sqlite", "postgresql"]
_Type = Literal["int16", "int64", "bytes", "text"]

_TYPES: Final[dict[Dialect, dict[_Type, str]]] = {
    "sqlite": {"int16": "INTEGER", "int64": "INTEGER", "bytes": "BLOB", "text": "TEXT"},
    "postgresql": {"int16": "SMALLINT", "int64": "BIGINT", "bytes": "BYTEA", "text": "TEXT"},
}


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: _Type
    not_null: bool = False


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Index:
    name: str
    table: str
    columns: tuple[str, ...]


def _text(*names: str) -> tuple[Column, ...]:
    return tuple(Column(name, "text") for name in names)


TABLES: Final = (
    Table(
        "entries",
        (
            Column("idx", "int64"),
            Column("entry", "bytes", not_null=True),
            Column("leaf_hash", "bytes", not_null=True),
            Column("at_ms", "int64"),
            *_text("verdict", "reason", "message_id", "sender", "recipients", "kind", "priority", "case_id"),
        ),
        ("idx",),
    ),
    Table(
        "nodes",
        (Column("level", "int16", True), Column("idx", "int64", True), Column("hash", "bytes", True)),
        ("level", "idx"),
    ),
    Table("tree_heads", (Column("size", "int64"), Column("head", "bytes", True)), ("size",)),
    Table(
        "cosignatures",
        (Column("size", "int64", True), Column("witness", "text", True), Column("signature", "bytes", True)),
        ("size", "witness"),
    ),
)
# Every index ends in idx: queries page by index, so the planner can walk one in order.
INDEXES: Final = tuple(
    Index(f"entries_{column}", "entries", (column, "idx"))
    for column in ("at_ms", "message_id", "sender", "verdict", "kind", "case_id")
)


def _create_table(table: Table, dialect: Dialect) -> str:
    types = _TYPES[dialect]
    single = table.primary_key[0] if len(table.primary_key) == 1 else None
    parts = []
    for c in table.columns:
        # A one-column INTEGER PRIMARY KEY is SQLite's rowid itself (no second b-tree).
        constraint = " PRIMARY KEY" if c.name == single else " NOT NULL" if c.not_null else ""
        parts.append(f"{c.name} {types[c.type]}{constraint}")
    if single is None:
        parts.append(f"PRIMARY KEY ({', '.join(table.primary_key)})")
    # A table keyed by two columns is clustered on them (SQLite would add a rowid b-tree).
    suffix = " WITHOUT ROWID" if single is None and dialect == "sqlite" else ""
    return f"CREATE TABLE IF NOT EXISTS {table.name} ({', '.join(parts)}){suffix}"


def ddl(dialect: Dialect) -> list[str]:
    """The statements that create the audit schema in ``dialect``, in order, without ``;``."""
    tables = [_create_table(t, dialect) for t in TABLES]
    indexes = [f"CREATE INDEX IF NOT EXISTS {i.name} ON {i.table} ({', '.join(i.columns)})" for i in INDEXES]
    return tables + indexes
