"""Audit stores: the ``AuditStore`` protocol and the SQL that both engines share.

A store keeps the audit entries (bytes + leaf hash + indexed metadata), the
perfect-subtree hashes of the Merkle tree (see :mod:`gateway.audit.tree`),
signed tree heads and witness cosignatures. ``append`` writes a whole batch,
its leaf hashes and every subtree node it completes in ONE transaction, so a
crash leaves either all of a batch or none of it. Proofs and historical roots
cost one batched read of O(log n) nodes.

The API is synchronous and thread-safe (the gateway calls it through
``asyncio.to_thread``): one writer connection and one reader connection, each
behind its own lock. This module does not sign tree heads or check
cosignatures; it stores bytes the caller has produced or verified.
The engines (:mod:`gateway.audit.sqlite`, :mod:`gateway.audit.postgres`)
subclass :class:`SQLAuditStoreBase` and supply connections and bulk writes;
their tables come from :mod:`gateway.audit.schema`. This module imports no
database driver; the value types it returns live in :mod:`gateway.audit.query`.
"""

from __future__ import annotations

import contextlib
import enum
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar, Final, Protocol

from exchange.core.errors import StoreError
from gateway.audit.errors import (
    CosignatureConflictError,
    EntryNotFoundError,
    MetadataError,
    PageTokenError,
    TreeHeadConflictError,
    TreeHeadNotFoundError,
    TreeSizeError,
)
from gateway.audit.merkle import leaf_hash
from gateway.audit.query import (
    MAX_APPEND_BATCH,
    MAX_ENTRY_BYTES,
    MAX_META_TEXT_LEN,
    MAX_PAGE_SIZE,
    MAX_SIGNED_BYTES,
    MAX_WITNESS_LEN,
    META_COLUMNS,
    AuditFilter,
    AuditPage,
    StatsRow,
    StoredEntry,
)
from gateway.audit.tree import Frontier, NodeKey, root_at
from gateway.audit.tree import consistency_proof as _consistency_proof
from gateway.audit.tree import inclusion_proof as _inclusion_proof

__all__ = ["AuditStore", "SQLAuditStoreBase"]

# Control characters (NUL above all: PostgreSQL's text type refuses it and fails the COPY)
# are refused by both engines alike, before any SQL.
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_COLUMNS: Final = "idx, entry, leaf_hash, " + ", ".join(META_COLUMNS)
_TOKEN = re.compile(r"^([on])\.(\d{1,19})$")


class AuditStore(Protocol):
    """What the gateway and the audit service need from a store (SQLite or PostgreSQL)."""

    def append(self, entries: Sequence[tuple[bytes, Mapping[str, object]]]) -> list[int]: ...
    def size(self) -> int: ...
    def root(self, size: int | None = None) -> bytes: ...
    def entry(self, index: int) -> StoredEntry: ...
    def inclusion_proof(self, index: int, size: int) -> list[bytes]: ...
    def consistency_proof(self, m: int, n: int) -> list[bytes]: ...
    def query(
        self,
        filters: AuditFilter | None = None,
        *,
        page_size: int = 100,
        page_token: str | None = None,
        oldest_first: bool = False,
    ) -> AuditPage: ...
    def save_tree_head(self, size: int, signed: bytes) -> None: ...
    def latest_tree_head(self) -> tuple[int, bytes] | None: ...
    def tree_head(self, size: int) -> bytes | None: ...
    def add_cosignature(self, size: int, witness: str, signature: bytes) -> None: ...
    def cosignatures(self, size: int) -> dict[str, bytes]: ...
    def stats(self, since_ms: int | None = None, until_ms: int | None = None) -> list[StatsRow]: ...
    def get_nodes(self, keys: list[NodeKey]) -> dict[NodeKey, bytes]: ...
    def close(self) -> None: ...


# --- checks done before any SQL -------------------------------------------------------


def _text(column: str, value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, enum.Enum):
        return value.name.lower().replace("_", "-")  # the model's label convention
    if isinstance(value, str) and len(value) <= MAX_META_TEXT_LEN and not _CONTROL.search(value):
        return value
    raise MetadataError(
        f"metadata {column!r} must be a str or enum of <= {MAX_META_TEXT_LEN} characters "
        "without control characters"
    )


def _recipients(value: object) -> str | None:
    items = [value] if isinstance(value, str) else value
    if items is None or not isinstance(items, Sequence):
        raise MetadataError("metadata 'recipients' must be a str or a sequence of str")
    names = [_text("recipients", v) for v in items]
    if not names:
        return None
    if any(not n or any(c.isspace() for c in n) for n in names):
        raise MetadataError("a recipient id is empty or contains whitespace")
    return " " + " ".join(n for n in names if n) + " "  # " a b ": a LIKE '% a %' finds one id


def _meta_row(meta: Mapping[str, object]) -> tuple[object, ...]:
    unknown = set(meta) - set(META_COLUMNS)
    if unknown:
        raise MetadataError(f"unknown metadata columns: {sorted(unknown)}")
    at_ms = meta.get("at_ms")
    if at_ms is not None and (isinstance(at_ms, bool) or not isinstance(at_ms, int) or at_ms < 0):
        raise MetadataError("metadata 'at_ms' must be a non-negative int")
    row: list[object] = [at_ms]
    for column in META_COLUMNS[1:]:
        value = meta.get(column)
        row.append(
            _recipients(value) if column == "recipients" and value is not None else _text(column, value)
        )
    return tuple(row)


def _check_signed(what: str, data: bytes) -> None:
    if not isinstance(data, bytes) or not 0 < len(data) <= MAX_SIGNED_BYTES:
        raise MetadataError(f"{what} must be 1..{MAX_SIGNED_BYTES} bytes")


_FEW_VALUED: Final = frozenset({"verdict", "reason", "kind", "priority"})


def _like(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"% {escaped} %"


def _record(row: Sequence[Any]) -> StoredEntry:
    recipients = tuple(row[8].split()) if row[8] else ()
    return StoredEntry(
        int(row[0]), bytes(row[1]), bytes(row[2]), row[3], row[4], row[5], row[6], row[7],
        recipients, row[9], row[10], row[11],
    )  # fmt: skip


# --- the SQL shared by both engines ("?" placeholders) -----------------------------------


class SQLAuditStoreBase:
    """Store logic on a DB-API engine; subclasses supply connections and bulk writes."""

    _db_errors: ClassVar[tuple[type[Exception], ...]] = ()
    # Written before a column to keep the planner off its index (SQLite's unary "+");
    # engines that plan by statistics (PostgreSQL) need none.
    _no_index: ClassVar[str] = ""

    def __init__(self) -> None:
        self._read_lock = threading.RLock()
        self._write_lock = threading.RLock()
        self._frontier = Frontier.empty()

    # hooks ------------------------------------------------------------------------------
    def _read(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def _write(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def _write_transaction(self) -> contextlib.AbstractContextManager[None]:
        """An exclusive write transaction on the writer connection (rolls back on error)."""
        raise NotImplementedError

    def _insert_rows(self, table: str, columns: str, rows: list[tuple[object, ...]]) -> None:
        raise NotImplementedError

    def _node_rows(self, keys: list[NodeKey]) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    # shared -----------------------------------------------------------------------------
    @contextlib.contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        try:
            yield
        except self._db_errors as e:
            # The engine's first line says why ("database or disk is full"); a DSN never
            # appears in it. Record content is never part of an engine error.
            reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
            raise StoreError(f"audit store failed to {what}: {type(e).__name__}: {reason}") from e

    def _load_frontier(self) -> None:
        with self._guard("open"):
            self._frontier = Frontier.load(self.size(), self)

    def __enter__(self) -> SQLAuditStoreBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get_nodes(self, keys: list[NodeKey]) -> dict[NodeKey, bytes]:
        """One batched read of perfect-subtree hashes (level 0 = leaf hashes)."""
        out: dict[NodeKey, bytes] = {}
        leaves = [i for level, i in keys if level == 0]
        inner = [key for key in keys if key[0] > 0]
        with self._guard("read nodes"), self._read_lock:
            if leaves:
                marks = ", ".join("?" * len(leaves))
                leaf_sql = f"SELECT idx, leaf_hash FROM entries WHERE idx IN ({marks})"  # noqa: S608
                for idx, h in self._read(leaf_sql, leaves):
                    out[(0, int(idx))] = bytes(h)
            if inner:
                for level, idx, h in self._node_rows(inner):
                    out[(int(level), int(idx))] = bytes(h)
        return out

    def append(self, entries: Sequence[tuple[bytes, Mapping[str, object]]]) -> list[int]:
        """Append a batch in one transaction; return the new entries' indices."""
        if len(entries) > MAX_APPEND_BATCH:
            raise MetadataError(f"batch of {len(entries)} entries exceeds {MAX_APPEND_BATCH}")
        prepared: list[tuple[bytes, bytes, tuple[object, ...]]] = []
        for data, meta in entries:
            if not isinstance(data, bytes) or len(data) > MAX_ENTRY_BYTES:
                raise MetadataError(f"an audit entry must be bytes of at most {MAX_ENTRY_BYTES}")
            prepared.append((data, leaf_hash(data), _meta_row(meta)))
        if not prepared:
            return []
        with self._guard("append"), self._write_lock:
            with self._write_transaction():
                # Re-read the size inside the exclusive transaction: if another
                # process appended, rebuild the frontier instead of forking the tree.
                start = int(self._write("SELECT COALESCE(MAX(idx) + 1, 0) FROM entries")[0][0])
                frontier = self._frontier if start == self._frontier.size else Frontier.load(start, self)
                new, created = frontier.append(h for _, h, _ in prepared)
                rows = [(start + i, d, h, *m) for i, (d, h, m) in enumerate(prepared)]
                self._insert_rows("entries", _COLUMNS, rows)
                self._insert_rows(
                    "nodes", "level, idx, hash", [(k[0], k[1], h) for k, h in created if k[0] > 0]
                )
            self._frontier = new  # only after the commit succeeded
        return list(range(start, start + len(prepared)))

    def size(self) -> int:
        with self._guard("read size"), self._read_lock:
            return int(self._read("SELECT COALESCE(MAX(idx) + 1, 0) FROM entries")[0][0])

    def _check_within(self, size: int) -> None:
        current = self.size()
        if not 0 <= size <= current:
            raise TreeSizeError(f"tree size {size} is outside 0..{current}")

    def root(self, size: int | None = None) -> bytes:
        """MTH of the first ``size`` entries (default: all)."""
        size = self.size() if size is None else size
        self._check_within(size)
        frontier = self._frontier
        if size == frontier.size:
            return frontier.root()
        return root_at(size, self)

    def entry(self, index: int) -> StoredEntry:
        with self._guard("read entry"), self._read_lock:
            rows = self._read(f"SELECT {_COLUMNS} FROM entries WHERE idx = ?", [index])  # noqa: S608
        if not rows:
            raise EntryNotFoundError(f"no audit entry at index {index}")
        return _record(rows[0])

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        self._check_within(size)
        return _inclusion_proof(index, size, self)

    def consistency_proof(self, m: int, n: int) -> list[bytes]:
        self._check_within(n)
        return _consistency_proof(m, n, self)

    def query(
        self,
        filters: AuditFilter | None = None,
        *,
        page_size: int = 100,
        page_token: str | None = None,
        oldest_first: bool = False,
    ) -> AuditPage:
        """Entries matching all filters, newest first unless ``oldest_first``; keyset paging by index."""
        if not 0 < page_size <= MAX_PAGE_SIZE:
            raise MetadataError(f"page_size must be 1..{MAX_PAGE_SIZE}")
        f = filters or AuditFilter()
        where: list[str] = []
        params: list[object] = []
        if page_token is not None:
            match = _TOKEN.match(page_token)
            if match is None or (match.group(1) == "o") != oldest_first:
                raise PageTokenError("page token is malformed or from the other sort order")
            where.append("idx > ?" if oldest_first else "idx < ?")
            params.append(int(match.group(2)))
        if f.since_ms is not None:
            where.append("at_ms >= ?")
            params.append(f.since_ms)
        if f.until_ms is not None:
            where.append("at_ms < ?")
            params.append(f.until_ms)
        # With a selective column (one message, one case) in the filter, the few-valued ones
        # are kept off their index (``_no_index``) so SQLite cannot pick it for ORDER BY idx
        # and walk every record of a verdict or kind (a cost that grows with the log).
        selective = f.message_id is not None or f.case_id is not None
        for column in ("verdict", "reason", "message_id", "sender", "kind", "priority", "case_id"):
            value = _text(column, getattr(f, column))
            if value is not None:
                plus = self._no_index if selective and column in _FEW_VALUED else ""
                where.append(f"{plus}{column} = ?")  # column names are constants, values are bound
                params.append(value)
        if f.recipient is not None:
            where.append("recipients LIKE ? ESCAPE '\\'")
            params.append(_like(f.recipient))
        clause = ("WHERE " + " AND ".join(where)) if where else ""
        order = "ASC" if oldest_first else "DESC"
        sql = f"SELECT {_COLUMNS} FROM entries {clause} ORDER BY idx {order} LIMIT ?"  # noqa: S608
        with self._guard("query"), self._read_lock:
            rows = self._read(sql, [*params, page_size + 1])
        records = tuple(_record(r) for r in rows[:page_size])
        token = None
        if len(rows) > page_size:
            token = f"{'o' if oldest_first else 'n'}.{records[-1].index}"
        return AuditPage(records, token)

    # tree heads and cosignatures --------------------------------------------------------
    def save_tree_head(self, size: int, signed: bytes) -> None:
        """Store a signed tree head; the first one stored for a size wins."""
        _check_signed("tree head", signed)
        with self._guard("save tree head"), self._write_lock, self._write_transaction():
            current = int(self._write("SELECT COALESCE(MAX(idx) + 1, 0) FROM entries")[0][0])
            if not 0 <= size <= current:
                raise TreeSizeError(f"tree head size {size} is beyond the log size {current}")
            rows = self._write("SELECT head FROM tree_heads WHERE size = ?", [size])
            if rows:
                if bytes(rows[0][0]) != signed:
                    raise TreeHeadConflictError(f"a different tree head is stored for size {size}")
                return
            self._write("INSERT INTO tree_heads (size, head) VALUES (?, ?)", [size, signed])

    def latest_tree_head(self) -> tuple[int, bytes] | None:
        with self._guard("read tree head"), self._read_lock:
            rows = self._read("SELECT size, head FROM tree_heads ORDER BY size DESC LIMIT 1")
        return (int(rows[0][0]), bytes(rows[0][1])) if rows else None

    def tree_head(self, size: int) -> bytes | None:
        with self._guard("read tree head"), self._read_lock:
            rows = self._read("SELECT head FROM tree_heads WHERE size = ?", [size])
        return bytes(rows[0][0]) if rows else None

    def add_cosignature(self, size: int, witness: str, signature: bytes) -> None:
        """Store a witness cosignature of the tree head at ``size`` (first one per witness wins)."""
        _check_signed("cosignature", signature)
        if not isinstance(witness, str) or not 0 < len(witness) <= MAX_WITNESS_LEN:
            raise MetadataError(f"witness name must be 1..{MAX_WITNESS_LEN} characters")
        with self._guard("save cosignature"), self._write_lock, self._write_transaction():
            if not self._write("SELECT 1 FROM tree_heads WHERE size = ?", [size]):
                raise TreeHeadNotFoundError(f"no tree head stored for size {size}")
            rows = self._write(
                "SELECT signature FROM cosignatures WHERE size = ? AND witness = ?", [size, witness]
            )
            if rows:
                if bytes(rows[0][0]) != signature:
                    raise CosignatureConflictError(f"witness {witness!r} already cosigned size {size}")
                return
            self._write(
                "INSERT INTO cosignatures (size, witness, signature) VALUES (?, ?, ?)",
                [size, witness, signature],
            )

    def cosignatures(self, size: int) -> dict[str, bytes]:
        with self._guard("read cosignatures"), self._read_lock:
            rows = self._read(
                "SELECT witness, signature FROM cosignatures WHERE size = ? ORDER BY witness", [size]
            )
        return {str(w): bytes(s) for w, s in rows}

    # statistics ---------------------------------------------------------------------------
    def stats(self, since_ms: int | None = None, until_ms: int | None = None) -> list[StatsRow]:
        """Record counts per (sender, recipient, kind, verdict, reason) in ``since <= at < until``."""
        where, params = [], []
        if since_ms is not None:
            where.append("at_ms >= ?")
            params.append(since_ms)
        if until_ms is not None:
            where.append("at_ms < ?")
            params.append(until_ms)
        clause = ("WHERE " + " AND ".join(where)) if where else ""
        sql = (
            "SELECT sender, recipients, kind, verdict, reason, COUNT(*) FROM entries "  # noqa: S608
            f"{clause} GROUP BY sender, recipients, kind, verdict, reason"
        )
        with self._guard("stats"), self._read_lock:
            rows = self._read(sql, params)
        counts: dict[tuple[str, str, str, str, str], int] = {}
        for sender, recipients, kind, verdict, reason, count in rows:
            for recipient in (recipients or "").split() or [""]:
                key = (sender or "", recipient, kind or "", verdict or "", reason or "")
                counts[key] = counts.get(key, 0) + int(count)
        return [StatsRow(*key, count) for key, count in sorted(counts.items())]
