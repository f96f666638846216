"""One suite, two engines: the SQLite and PostgreSQL audit stores behave the same.

The PostgreSQL leg needs ``LIAISON_TEST_PG_DSN`` and gets a fresh schema per test.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from exchange.core.model import Kind, Priority
from gateway.audit.errors import (
    CosignatureConflictError,
    EntryNotFoundError,
    MetadataError,
    PageTokenError,
    TreeHeadConflictError,
    TreeHeadNotFoundError,
    TreeSizeError,
)
from gateway.audit.merkle import (
    EMPTY_ROOT,
    leaf_hash,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)
from gateway.audit.postgres import PostgresAuditStore
from gateway.audit.query import MAX_ENTRY_BYTES, AuditFilter
from gateway.audit.schema import INDEXES, TABLES
from gateway.audit.sqlite import SQLiteAuditStore
from gateway.audit.store import AuditStore

Opener = Callable[[], AuditStore]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """A callable opening (or re-opening) the same log; every store it opened is closed after."""
    opened: list[AuditStore] = []
    if request.param == "sqlite":
        path = tmp_path / "audit.db"

        def opener() -> AuditStore:
            opened.append(SQLiteAuditStore(path))
            return opened[-1]

        yield opener
    else:
        dsn = os.environ.get("LIAISON_TEST_PG_DSN")
        if not dsn:
            pytest.skip("LIAISON_TEST_PG_DSN not set: PostgreSQL store tests skipped")
        schema = f"t_audit_{uuid.uuid4().hex[:16]}"
        pg_dsn: str = dsn

        def opener() -> AuditStore:
            opened.append(PostgresAuditStore(pg_dsn, schema=schema))
            return opened[-1]

        yield opener
    for store in opened:
        store.close()
    if request.param == "postgres":
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture
def store(open_store: Opener) -> AuditStore:
    return open_store()


def _meta(i: int) -> dict[str, object]:
    return {
        "at_ms": 1_000 + i,
        "verdict": "accepted" if i % 3 else "rejected",
        "reason": None if i % 3 else "policy_denied",
        "message_id": f"m-{i}",
        "sender": f"office-{i % 4}",
        "recipients": [f"office-{(i + 1) % 4}", f"office-{(i + 2) % 4}"],
        "kind": Kind.ALERT if i % 2 else Kind.CASE_MESSAGE,
        "priority": Priority.ROUTINE,
        "case_id": f"case-{i % 5}",
    }


def _entry(i: int) -> bytes:
    return f"audit-record-{i}".encode()


def _fill(store: AuditStore, n: int, batch: int = 7) -> list[bytes]:
    for start in range(0, n, batch):
        stop = min(start + batch, n)
        assert store.append([(_entry(i), _meta(i)) for i in range(start, stop)]) == list(range(start, stop))
    return [leaf_hash(_entry(i)) for i in range(n)]


def test_empty_store(store: AuditStore) -> None:
    assert store.size() == 0
    assert store.root() == EMPTY_ROOT
    assert store.latest_tree_head() is None
    assert store.append([]) == []
    with pytest.raises(TreeSizeError):
        store.inclusion_proof(0, 1)
    with pytest.raises(EntryNotFoundError):
        store.entry(0)


def test_one_entry_at_a_time(store: AuditStore) -> None:
    """Appends of a single entry (no interior node completes) — how a quiet gateway writes."""
    hashes = []
    for i in range(5):
        entry = f"entry-{i}".encode()
        assert store.append([(entry, {"at_ms": i, "sender": "a"})]) == [i]
        hashes.append(leaf_hash(entry))
        assert store.root() == root_from_leaf_hashes(hashes)


def test_roots_and_proofs_match_the_pure_tree(store: AuditStore) -> None:
    hashes = _fill(store, 45)
    assert store.size() == 45
    roots = [root_from_leaf_hashes(hashes[:n]) for n in range(46)]
    for n in range(46):
        assert store.root(n) == roots[n]
    assert store.root() == roots[45]
    for n in (1, 2, 7, 8, 9, 31, 32, 33, 45):
        for i in range(n):
            verify_inclusion(hashes[i], i, n, store.inclusion_proof(i, n), roots[n])
        for m in range(1, n + 1):
            verify_consistency(m, n, store.consistency_proof(m, n), roots[m], roots[n])
    with pytest.raises(TreeSizeError):
        store.root(46)
    with pytest.raises(TreeSizeError):
        store.inclusion_proof(3, 46)
    with pytest.raises(TreeSizeError):
        store.consistency_proof(0, 45)
    with pytest.raises(TreeSizeError):
        store.consistency_proof(5, 46)


def test_entry_roundtrip(store: AuditStore) -> None:
    _fill(store, 5)
    record = store.entry(3)
    assert record.index == 3
    assert record.entry == _entry(3)
    assert record.leaf_hash == leaf_hash(_entry(3))
    assert record.at_ms == 1003
    assert record.verdict == "rejected"
    assert record.reason == "policy_denied"
    assert record.message_id == "m-3"
    assert record.sender == "office-3"
    assert record.recipients == ("office-0", "office-1")
    assert record.kind == "alert"
    assert store.entry(2).kind == "case-message"
    assert record.priority == "routine"
    assert record.case_id == "case-3"
    with pytest.raises(EntryNotFoundError):
        store.entry(5)


def test_reopen_after_close_keeps_log(open_store: Opener) -> None:
    first = open_store()
    hashes = _fill(first, 21)
    first.save_tree_head(21, b"sth-21")
    first.add_cosignature(21, "witness-b", b"cosig")
    first.close()
    second = open_store()
    assert second.size() == 21
    assert second.root() == root_from_leaf_hashes(hashes)
    assert second.latest_tree_head() == (21, b"sth-21")
    assert second.cosignatures(21) == {"witness-b": b"cosig"}
    hashes += _fill_from(second, 21, 30)
    assert second.root() == root_from_leaf_hashes(hashes)


def _fill_from(store: AuditStore, start: int, stop: int) -> list[bytes]:
    store.append([(_entry(i), _meta(i)) for i in range(start, stop)])
    return [leaf_hash(_entry(i)) for i in range(start, stop)]


def test_two_handles_on_one_log_do_not_fork_the_tree(open_store: Opener) -> None:
    a, b = open_store(), open_store()
    hashes = _fill_from(a, 0, 5)
    hashes += _fill_from(b, 5, 9)  # b's cached frontier is stale: it must reload
    hashes += _fill_from(a, 9, 12)
    assert a.root() == b.root() == root_from_leaf_hashes(hashes)


def test_concurrent_appends_from_threads(store: AuditStore) -> None:
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        try:
            for j in range(10):
                store.append([(f"t{t}-{j}-{k}".encode(), {"sender": f"office-{t}"}) for k in range(3)])
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert store.size() == 120
    hashes = [store.entry(i).leaf_hash for i in range(120)]
    assert store.root() == root_from_leaf_hashes(hashes)


QUERIES = [
    ("all", AuditFilter(), list(range(20))),
    ("verdict", AuditFilter(verdict="rejected"), [i for i in range(20) if i % 3 == 0]),
    ("reason", AuditFilter(reason="policy_denied"), [i for i in range(20) if i % 3 == 0]),
    ("sender", AuditFilter(sender="office-1"), [i for i in range(20) if i % 4 == 1]),
    (
        "recipient",
        AuditFilter(recipient="office-2"),
        [i for i in range(20) if (i + 1) % 4 == 2 or (i + 2) % 4 == 2],
    ),
    ("recipient-no-prefix-match", AuditFilter(recipient="office"), []),
    ("recipient-wildcard-escaped", AuditFilter(recipient="office-%"), []),
    ("kind", AuditFilter(kind="alert"), [i for i in range(20) if i % 2]),
    ("kind-enum", AuditFilter(kind=Kind.CASE_MESSAGE), [i for i in range(20) if i % 2 == 0]),
    ("priority-enum", AuditFilter(priority=Priority.ROUTINE), list(range(20))),
    ("priority", AuditFilter(priority="flash"), []),
    ("case", AuditFilter(case_id="case-2"), [i for i in range(20) if i % 5 == 2]),
    ("message", AuditFilter(message_id="m-7"), [7]),
    ("time-range", AuditFilter(since_ms=1005, until_ms=1009), [5, 6, 7, 8]),
    ("combined", AuditFilter(sender="office-0", verdict="rejected"), [0, 12]),
]


@pytest.mark.parametrize(
    ("filters", "expected"), [(f, e) for _, f, e in QUERIES], ids=[i for i, _, _ in QUERIES]
)
@pytest.mark.parametrize("oldest_first", [True, False], ids=["oldest-first", "newest-first"])
def test_query_filters_and_pagination(
    store: AuditStore, filters: AuditFilter, expected: list[int], oldest_first: bool
) -> None:
    _fill(store, 20)
    seen: list[int] = []
    token = None
    pages = 0
    while True:
        page = store.query(filters, page_size=3, page_token=token, oldest_first=oldest_first)
        assert len(page.records) <= 3
        seen += [r.index for r in page.records]
        pages += 1
        token = page.next_page_token
        if token is None:
            break
    assert seen == (expected if oldest_first else expected[::-1])
    assert pages == max(1, -(-len(expected) // 3))


def test_query_refuses_bad_paging(store: AuditStore) -> None:
    _fill(store, 10)
    token = store.query(page_size=2).next_page_token
    assert token is not None
    with pytest.raises(PageTokenError):
        store.query(page_size=2, page_token=token, oldest_first=True)
    with pytest.raises(PageTokenError):
        store.query(page_token="n.'; DROP TABLE entries")
    with pytest.raises(MetadataError):
        store.query(page_size=0)
    with pytest.raises(MetadataError):
        store.query(page_size=100_000)


def test_query_by_message_and_verdict(store: AuditStore) -> None:
    _fill(store, 6)
    assert [r.index for r in store.query(AuditFilter(message_id="m-3")).records] == [3]
    assert [r.index for r in store.query(AuditFilter(message_id="m-3", verdict="rejected")).records] == [3]
    assert store.query(AuditFilter(message_id="m-3", verdict="accepted")).records == ()
    assert store.query(AuditFilter(message_id="m-99")).records == ()


def test_tree_heads(store: AuditStore) -> None:
    _fill(store, 10)
    assert store.tree_head(4) is None
    store.save_tree_head(4, b"sth-4")
    store.save_tree_head(4, b"sth-4")  # idempotent
    store.save_tree_head(10, b"sth-10")
    assert store.tree_head(4) == b"sth-4"
    assert store.latest_tree_head() == (10, b"sth-10")
    with pytest.raises(TreeHeadConflictError):
        store.save_tree_head(4, b"another-sth-4")
    with pytest.raises(TreeSizeError):
        store.save_tree_head(11, b"sth-11")
    with pytest.raises(MetadataError):
        store.save_tree_head(5, b"")
    assert store.tree_head(4) == b"sth-4"


def test_cosignatures(store: AuditStore) -> None:
    _fill(store, 3)
    store.save_tree_head(3, b"sth-3")
    store.add_cosignature(3, "embassy-b", b"sig-b")
    store.add_cosignature(3, "embassy-a", b"sig-a")
    store.add_cosignature(3, "embassy-a", b"sig-a")  # idempotent
    assert store.cosignatures(3) == {"embassy-a": b"sig-a", "embassy-b": b"sig-b"}
    assert store.cosignatures(2) == {}
    with pytest.raises(CosignatureConflictError):
        store.add_cosignature(3, "embassy-a", b"other")
    with pytest.raises(TreeHeadNotFoundError):
        store.add_cosignature(2, "embassy-a", b"sig")
    with pytest.raises(MetadataError):
        store.add_cosignature(3, "", b"sig")


BAD_APPENDS = [
    ("unknown-column", [(b"x", {"colour": "red"})]),
    ("at-ms-not-int", [(b"x", {"at_ms": "yesterday"})]),
    ("at-ms-bool", [(b"x", {"at_ms": True})]),
    ("at-ms-negative", [(b"x", {"at_ms": -1})]),
    ("text-not-str", [(b"x", {"sender": 42})]),
    ("recipient-with-space", [(b"x", {"recipients": ["a b"]})]),
    ("recipients-not-list", [(b"x", {"recipients": 7})]),
    ("entry-not-bytes", [("text", {})]),
    ("entry-oversize", [(b"x" * (MAX_ENTRY_BYTES + 1), {})]),
    ("second-of-batch-bad", [(b"ok", {}), (b"x", {"verdict": 1.5})]),
]


@pytest.mark.parametrize("batch", [b for _, b in BAD_APPENDS], ids=[i for i, _ in BAD_APPENDS])
def test_bad_appends_write_nothing(store: AuditStore, batch: list[tuple[bytes, dict[str, object]]]) -> None:
    _fill(store, 2)
    root = store.root()
    with pytest.raises(MetadataError):
        store.append(batch)
    assert store.size() == 2
    assert store.root() == root


# --- one schema, two engines ------------------------------------------------------------


Shape = tuple[set[tuple[str, str, bool]], set[tuple[str, tuple[str, ...]]]]
"""(table, column, not null) and (index, its columns): what two engines must agree on."""


def _sqlite_shape(path: Path) -> Shape:
    conn = sqlite3.connect(path)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        columns: set[tuple[str, str, bool]] = set()
        indexes: set[tuple[str, tuple[str, ...]]] = set()
        for table in tables:
            info = conn.execute(f"PRAGMA table_info({table})").fetchall()
            pk = tuple(r[1] for r in sorted((r for r in info if r[5]), key=lambda r: r[5]))
            columns |= {(table, r[1], bool(r[3]) or r[1] in pk) for r in info}
            indexes.add((f"{table} primary key", pk))
            for _, name, *_rest in conn.execute(f"PRAGMA index_list({table})").fetchall():
                if not name.startswith("sqlite_autoindex_"):
                    cols = [r[2] for r in conn.execute(f"PRAGMA index_info({name})").fetchall()]
                    indexes.add((f"{table}.{name}", tuple(cols)))
        return columns, indexes
    finally:
        conn.close()


def _postgres_shape(
    dsn: str, schema: str
) -> tuple[set[tuple[str, str, bool]], set[tuple[str, tuple[str, ...]]]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        columns = {
            (str(t), str(c), nullable == "NO")
            for t, c, nullable in conn.execute(
                "SELECT table_name, column_name, is_nullable FROM information_schema.columns "
                "WHERE table_schema = %s",
                [schema],
            )
        }
        rows = conn.execute(
            "SELECT t.relname, i.relname, x.indisprimary, array_agg(a.attname::text ORDER BY k.ord) "
            "FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid "
            "JOIN pg_namespace n ON n.oid = t.relnamespace "
            "CROSS JOIN LATERAL unnest(x.indkey) WITH ORDINALITY AS k(attnum, ord) "
            "JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum "
            "WHERE n.nspname = %s GROUP BY t.relname, i.relname, x.indisprimary",
            [schema],
        ).fetchall()
        indexes = {
            (f"{t} primary key" if primary else f"{t}.{i}", tuple(cols)) for t, i, primary, cols in rows
        }
        return columns, indexes


@pytest.mark.postgres
def test_both_engines_have_the_same_tables_columns_and_indexes(tmp_path: Path) -> None:
    dsn = os.environ.get("LIAISON_TEST_PG_DSN")
    if not dsn:
        pytest.skip("LIAISON_TEST_PG_DSN not set: PostgreSQL store tests skipped")
    SQLiteAuditStore(tmp_path / "audit.db").close()
    schema = f"t_audit_{uuid.uuid4().hex[:16]}"
    PostgresAuditStore(dsn, schema=schema).close()
    try:
        lite = _sqlite_shape(tmp_path / "audit.db")
        pg = _postgres_shape(dsn, schema)
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
    assert lite == pg
    # ...and both are what gateway.audit.schema describes.
    expected_columns = {
        (t.name, c.name, c.not_null or c.name in t.primary_key) for t in TABLES for c in t.columns
    }
    expected_indexes = {(f"{t.name} primary key", t.primary_key) for t in TABLES} | {
        (f"{i.table}.{i.name}", i.columns) for i in INDEXES
    }
    assert lite == (expected_columns, expected_indexes)
