"""The office node's durable store (SQLite): outbox, inbox, receipts, out-queue.

A message is ACCEPTED only once its row is committed here; the inbox is what
``Subscribe`` replays from, addressed by a monotonically increasing cursor;
``frames`` is the queue of bytes still to publish to the gateway, so nothing
accepted is lost if the node or NATS goes down before publishing. Bodies are
stored as the codec's bytes: this module parses nothing.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import astuple, dataclass, field
from pathlib import Path

from exchange.core.errors import DuplicateError, NotFoundError
from exchange.runtime.sqlite import GroupCommitDB

__all__ = ["Frame", "InboxRecord", "OfficeStore", "SentRecord", "StatementRecord", "UploadRecord"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sent (
  message_id TEXT PRIMARY KEY,
  idempotency_key TEXT UNIQUE,
  created_ms INTEGER NOT NULL,
  kind INTEGER NOT NULL,
  priority INTEGER NOT NULL,
  case_id TEXT NOT NULL,
  recipients TEXT NOT NULL,
  header_digest BLOB NOT NULL,
  body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS sent_case ON sent(case_id);
CREATE TABLE IF NOT EXISTS inbox (
  cursor INTEGER PRIMARY KEY AUTOINCREMENT,
  message_id TEXT NOT NULL UNIQUE,
  sender TEXT NOT NULL,
  recipients TEXT NOT NULL,
  kind INTEGER NOT NULL,
  priority INTEGER NOT NULL,
  case_id TEXT NOT NULL,
  in_reply_to TEXT NOT NULL,
  created_ms INTEGER NOT NULL,
  delivered_ms INTEGER NOT NULL,
  log_index INTEGER NOT NULL,
  header_digest BLOB NOT NULL,
  body BLOB NOT NULL,
  read_ms INTEGER
);
CREATE INDEX IF NOT EXISTS inbox_case ON inbox(case_id);
CREATE TABLE IF NOT EXISTS statements (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  message_id TEXT NOT NULL,
  recipient TEXT NOT NULL,
  state INTEGER NOT NULL,
  reason INTEGER NOT NULL,
  detail TEXT NOT NULL,
  at_ms INTEGER NOT NULL,
  signed BLOB NOT NULL,
  UNIQUE (message_id, recipient, state, reason)
);
CREATE TABLE IF NOT EXISTS frames (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  msg_id TEXT NOT NULL UNIQUE,
  priority INTEGER NOT NULL,
  payload BLOB NOT NULL,
  published INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS frames_pending ON frames(published, priority DESC, seq);
CREATE TABLE IF NOT EXISTS directory (
  version INTEGER PRIMARY KEY,
  signed BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS log_heads (
  gateway TEXT NOT NULL,
  size INTEGER NOT NULL,
  root BLOB NOT NULL,
  head BLOB NOT NULL,
  seen_ms INTEGER NOT NULL,
  PRIMARY KEY (gateway, size)
);
CREATE TABLE IF NOT EXISTS uploads (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  media_type TEXT NOT NULL,
  size INTEGER NOT NULL,
  chunk_size INTEGER NOT NULL,
  chunk_count INTEGER NOT NULL,
  sha256 BLOB NOT NULL,
  root BLOB NOT NULL,
  content_key BLOB NOT NULL,
  created_ms INTEGER NOT NULL
);
"""

# A statement's state column: receipt states 1..4, or REJECTED for a rejection.
REJECTED = 100


@dataclass(frozen=True)
class SentRecord:
    message_id: str
    created_ms: int
    kind: int
    priority: int
    case_id: str
    recipients: tuple[str, ...]
    header_digest: bytes
    body: bytes
    idempotency_key: str | None = None


@dataclass(frozen=True)
class InboxRecord:
    message_id: str
    sender: str
    recipients: tuple[str, ...]
    kind: int
    priority: int
    case_id: str
    in_reply_to: str
    created_ms: int
    delivered_ms: int
    log_index: int
    header_digest: bytes
    body: bytes
    cursor: int = 0
    read_ms: int | None = None


@dataclass(frozen=True)
class StatementRecord:
    message_id: str
    recipient: str
    state: int  # ReceiptState value, or REJECTED
    reason: int  # Reason value for rejections, else 0
    detail: str
    at_ms: int
    signed: bytes


@dataclass(frozen=True)
class UploadRecord:
    """An attachment this office uploaded: its manifest, content key included (like sent bodies)."""

    id: str
    name: str
    media_type: str
    size: int
    chunk_size: int
    chunk_count: int
    sha256: bytes
    root: bytes
    content_key: bytes = field(repr=False)
    created_ms: int = 0


_UPLOAD_COLUMNS = "id, name, media_type, size, chunk_size, chunk_count, sha256, root, content_key, created_ms"


@dataclass(frozen=True)
class Frame:
    """Bytes queued for publishing to the gateway, with the NATS dedup id."""

    msg_id: str
    priority: int
    payload: bytes
    seq: int = 0


def _add_frame(conn: sqlite3.Connection, frame: Frame) -> None:
    conn.execute(
        "INSERT OR IGNORE INTO frames (msg_id, priority, payload) VALUES (?, ?, ?)",
        (frame.msg_id, frame.priority, frame.payload),
    )


def _add_statement(conn: sqlite3.Connection, s: StatementRecord) -> bool:
    cur = conn.execute(
        "INSERT OR IGNORE INTO statements (message_id, recipient, state, reason, detail, at_ms, signed)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (s.message_id, s.recipient, s.state, s.reason, s.detail, s.at_ms, s.signed),
    )
    return cur.rowcount == 1


_INBOX_COLUMNS = (
    "message_id, sender, recipients, kind, priority, case_id, in_reply_to, created_ms,"
    " delivered_ms, log_index, header_digest, body, cursor, read_ms"
)


_SENT_COLUMNS = (
    "message_id, created_ms, kind, priority, case_id, recipients, header_digest, body, idempotency_key"
)


def _sent_row(row: tuple[object, ...]) -> SentRecord:
    values = list(row)
    values[5] = tuple(json.loads(str(values[5])))
    return SentRecord(*values)  # type: ignore[arg-type]


def _inbox_row(row: tuple[object, ...]) -> InboxRecord:
    values = list(row)
    values[2] = tuple(json.loads(str(values[2])))
    return InboxRecord(*values)  # type: ignore[arg-type]


class OfficeStore:
    """The office node's SQLite file. Writes are async and group-committed."""

    def __init__(self, path: Path) -> None:
        self.db = GroupCommitDB(path, _SCHEMA)

    def close(self) -> None:
        self.db.close()

    # --- sending -------------------------------------------------------------------

    async def record_sent(self, sent: SentRecord, accepted: StatementRecord, frame: Frame) -> str:
        """Store an accepted message, its ACCEPTED receipt and its frame in one commit.

        Returns the message id; when the idempotency key was used before, the
        earlier message's id (and nothing new is stored).
        """

        def op(conn: sqlite3.Connection) -> str:
            if sent.idempotency_key:
                row = conn.execute(
                    "SELECT message_id FROM sent WHERE idempotency_key = ?", (sent.idempotency_key,)
                ).fetchone()
                if row:
                    return str(row[0])
            try:
                conn.execute(
                    "INSERT INTO sent (message_id, idempotency_key, created_ms, kind, priority, case_id,"
                    " recipients, header_digest, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        sent.message_id,
                        sent.idempotency_key,
                        sent.created_ms,
                        sent.kind,
                        sent.priority,
                        sent.case_id,
                        json.dumps(list(sent.recipients)),
                        sent.header_digest,
                        sent.body,
                    ),
                )
            except sqlite3.IntegrityError as e:
                raise DuplicateError(f"message {sent.message_id} was stored already") from e
            _add_statement(conn, accepted)
            _add_frame(conn, frame)
            return sent.message_id

        return await self.db.write(op)

    def sent(self, message_id: str) -> SentRecord | None:
        row = self.db.read(
            lambda c: c.execute(
                f"SELECT {_SENT_COLUMNS} FROM sent WHERE message_id = ?",  # noqa: S608
                (message_id,),
            ).fetchone()
        )
        return _sent_row(row) if row else None

    async def record_statement(self, statement: StatementRecord) -> bool:
        """Store a receipt or rejection about a sent message; False when known already."""
        return await self.db.write(lambda conn: _add_statement(conn, statement))

    def statements(self, message_id: str) -> list[StatementRecord]:
        rows = self.db.read(
            lambda c: c.execute(
                "SELECT message_id, recipient, state, reason, detail, at_ms, signed FROM statements"
                " WHERE message_id = ? ORDER BY id",
                (message_id,),
            ).fetchall()
        )
        return [StatementRecord(*r) for r in rows]

    # --- out-queue -----------------------------------------------------------------

    def pending_frames(self, limit: int = 256) -> list[Frame]:
        rows = self.db.read(
            lambda c: c.execute(
                "SELECT msg_id, priority, payload, seq FROM frames WHERE published = 0"
                " ORDER BY priority DESC, seq LIMIT ?",
                (limit,),
            ).fetchall()
        )
        return [Frame(*r) for r in rows]

    def pending_count(self) -> int:
        """Frames not yet published (counted over the ``frames_pending`` index)."""
        row = self.db.read(lambda c: c.execute("SELECT count(*) FROM frames WHERE published = 0").fetchone())
        return int(row[0])

    async def mark_published(self, seqs: list[int]) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.executemany("UPDATE frames SET published = 1 WHERE seq = ?", [(s,) for s in seqs])

        await self.db.write(op)

    # --- receiving -----------------------------------------------------------------

    async def record_delivery(self, record: InboxRecord, delivered: Frame) -> int | None:
        """Store a delivered message and queue its DELIVERED receipt, in one commit.

        Returns the new cursor, or None when the message id is in the inbox
        already (a redelivery: exactly-once towards agency systems).
        """

        def op(conn: sqlite3.Connection) -> int | None:
            cur = conn.execute(
                "INSERT OR IGNORE INTO inbox (message_id, sender, recipients, kind, priority, case_id,"
                " in_reply_to, created_ms, delivered_ms, log_index, header_digest, body)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.message_id,
                    record.sender,
                    json.dumps(list(record.recipients)),
                    record.kind,
                    record.priority,
                    record.case_id,
                    record.in_reply_to,
                    record.created_ms,
                    record.delivered_ms,
                    record.log_index,
                    record.header_digest,
                    record.body,
                ),
            )
            _add_frame(conn, delivered)
            return cur.lastrowid if cur.rowcount == 1 else None

        return await self.db.write(op)

    def inbox_after(self, cursor: int, *, include_read: bool, limit: int = 256) -> list[InboxRecord]:
        where = "cursor > ?" if include_read else "cursor > ? AND read_ms IS NULL"
        rows = self.db.read(
            lambda c: c.execute(
                f"SELECT {_INBOX_COLUMNS} FROM inbox WHERE {where} ORDER BY cursor LIMIT ?",  # noqa: S608
                (cursor, limit),
            ).fetchall()
        )
        return [_inbox_row(r) for r in rows]

    def inbox_message(self, message_id: str) -> InboxRecord | None:
        row = self.db.read(
            lambda c: c.execute(
                f"SELECT {_INBOX_COLUMNS} FROM inbox WHERE message_id = ?",  # noqa: S608
                (message_id,),
            ).fetchone()
        )
        return _inbox_row(row) if row else None

    async def mark_read(self, message_id: str, read_ms: int, receipt: Frame) -> bool:
        """Mark a delivered message READ and queue its READ receipt; False if read before."""

        def op(conn: sqlite3.Connection) -> bool:
            row = conn.execute("SELECT read_ms FROM inbox WHERE message_id = ?", (message_id,)).fetchone()
            if row is None:
                raise NotFoundError(f"message {message_id} is not in this office's inbox")
            if row[0] is not None:
                return False
            conn.execute("UPDATE inbox SET read_ms = ? WHERE message_id = ?", (read_ms, message_id))
            _add_frame(conn, receipt)
            return True

        return await self.db.write(op)

    # --- cases and directory -------------------------------------------------------

    def case(self, case_id: str) -> tuple[list[SentRecord], list[InboxRecord]]:
        sent_rows = self.db.read(
            lambda c: c.execute(
                f"SELECT {_SENT_COLUMNS} FROM sent WHERE case_id = ? ORDER BY created_ms",  # noqa: S608
                (case_id,),
            ).fetchall()
        )
        sent = [_sent_row(r) for r in sent_rows]
        rows = self.db.read(
            lambda c: c.execute(
                f"SELECT {_INBOX_COLUMNS} FROM inbox WHERE case_id = ? ORDER BY created_ms",  # noqa: S608
                (case_id,),
            ).fetchall()
        )
        return sent, [_inbox_row(r) for r in rows]

    async def save_directory(self, version: int, signed: bytes) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT OR REPLACE INTO directory (version, signed) VALUES (?, ?)", (version, signed)
            )

        await self.db.write(op)

    def log_head(self, gateway: str, size: int) -> tuple[bytes, bytes] | None:
        """(root, signed head bytes) of the first head of ``size`` this office saw from ``gateway``."""
        row = self.db.read(
            lambda c: c.execute(
                "SELECT root, head FROM log_heads WHERE gateway = ? AND size = ?", (gateway, size)
            ).fetchone()
        )
        return (bytes(row[0]), bytes(row[1])) if row else None

    async def record_log_head(self, gateway: str, size: int, root: bytes, head: bytes, seen_ms: int) -> None:
        """Keep a tree head this office was shown (the first one of each size stays)."""
        await self.db.write(
            lambda c: c.execute(
                "INSERT OR IGNORE INTO log_heads (gateway, size, root, head, seen_ms) VALUES (?, ?, ?, ?, ?)",
                (gateway, size, root, head, seen_ms),
            )
        )

    async def prune_log_heads(self, gateway: str, keep: int) -> None:
        """Keep the first head seen and the ``keep`` largest of ``gateway``; drop the others."""
        await self.db.write(
            lambda c: c.execute(
                "DELETE FROM log_heads WHERE gateway = ?1"
                " AND size > (SELECT MIN(size) FROM log_heads WHERE gateway = ?1)"
                " AND size <= (SELECT size FROM log_heads WHERE gateway = ?1"
                " ORDER BY size DESC LIMIT 1 OFFSET ?2)",
                (gateway, keep),
            )
        )

    def latest_directory(self) -> bytes | None:
        row = self.db.read(
            lambda c: c.execute("SELECT signed FROM directory ORDER BY version DESC LIMIT 1").fetchone()
        )
        return bytes(row[0]) if row else None

    def stored_directories(self) -> list[bytes]:
        """Every directory this office accepted, oldest version first (for ``load_directory``)."""
        rows = self.db.read(lambda c: c.execute("SELECT signed FROM directory ORDER BY version").fetchall())
        return [bytes(r[0]) for r in rows]

    async def record_upload(self, upload: UploadRecord) -> None:
        await self.db.write(
            lambda c: c.execute(
                f"INSERT INTO uploads ({_UPLOAD_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",  # noqa: S608
                astuple(upload),
            )
        )

    def upload(self, attachment_id: str) -> UploadRecord | None:
        row = self.db.read(
            lambda c: c.execute(
                f"SELECT {_UPLOAD_COLUMNS} FROM uploads WHERE id = ?",  # noqa: S608
                (attachment_id,),
            ).fetchone()
        )
        if row is None:
            return None
        i, name, media, size, chunk_size, count, sha, root, key, created = row
        return UploadRecord(
            str(i),
            str(name),
            str(media),
            int(size),
            int(chunk_size),
            int(count),
            bytes(sha),
            bytes(root),
            bytes(key),
            int(created),
        )
