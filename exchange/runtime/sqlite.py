"""Group-committing SQLite access for the asyncio shells.

Writes are callables run on one writer thread; whatever is queued while a
commit is in flight is run in the next single transaction (group commit), so
many concurrent requests share one fsync without any of them being
acknowledged before its own write is durable. Reads use their own connection
(WAL lets them run beside the writer). This module knows nothing of the
schema; the stores built on it do.

:func:`connect` is the one way this project opens a SQLite file (the office
store here, the audit store in :mod:`gateway.audit.sqlite`): WAL mode, checked
to have taken, and ``synchronous=FULL``. A ``sqlite3.Error`` never leaves this
module raw: it becomes :class:`~exchange.core.errors.StoreError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Final, TypeVar

from exchange.core.errors import StoreError

__all__ = ["GroupCommitDB", "connect"]

T = TypeVar("T")
MAX_BATCH: Final = 512
BUSY_TIMEOUT_S: Final = 30  # how long a write waits for another process's lock
_STOP: Final = object()


def connect(path: str | os.PathLike[str]) -> sqlite3.Connection:
    """Open ``path`` in autocommit mode with WAL (verified), synchronous=FULL and foreign keys.

    Raises StoreError when the file cannot be opened or SQLite refuses WAL
    (a network filesystem, a read-only folder): without WAL, readers would
    block the writer and the stores' one-writer/one-reader design breaks.
    """
    try:
        conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=BUSY_TIMEOUT_S)
    except sqlite3.Error as e:
        raise StoreError(f"cannot open SQLite file {path}: {e}") from e
    try:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
    except sqlite3.Error as e:
        conn.close()
        raise StoreError(f"cannot open SQLite file {path}: {e}") from e
    if str(mode).lower() != "wal":
        conn.close()
        raise StoreError(f"SQLite refused WAL mode for {path} (got {mode})")
    return conn


class GroupCommitDB:
    """One SQLite file: a writer thread with group commit, and a read connection."""

    def __init__(self, path: Path, schema: str) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = connect(path)
        try:
            try:
                self._writer.executescript(schema)
            except sqlite3.Error as e:
                raise StoreError(f"cannot create the schema of {path}: {e}") from e
            self._reader = connect(path)
        except StoreError:
            self._writer.close()
            raise
        self._read_lock = threading.Lock()
        self._closed = False
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=f"sqlite-writer:{path.name}", daemon=True)
        self._thread.start()

    # --- writes ------------------------------------------------------------------

    async def write(self, op: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``op`` inside a transaction; return once that transaction is committed."""
        fut: Future[T] = Future()
        self._queue.put(_Op(op, fut))
        return await asyncio.wrap_future(fut)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            assert isinstance(first, _Op)
            batch = [first]
            while len(batch) < MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if not isinstance(item, _Op):
                    self._queue.put(_STOP)
                    break
                batch.append(item)
            self._commit(batch)

    def _commit(self, batch: list[_Op]) -> None:
        results: list[tuple[Future[Any], object]] = []
        conn = self._writer
        try:
            conn.execute("BEGIN IMMEDIATE")
            for item in batch:
                conn.execute("SAVEPOINT op")
                try:
                    results.append((item.fut, item.op(conn)))
                    conn.execute("RELEASE op")
                except Exception as e:  # noqa: BLE001 - handed to the caller's future
                    conn.execute("ROLLBACK TO op")
                    conn.execute("RELEASE op")
                    results.append((item.fut, _Failure(_mapped(e))))
            conn.execute("COMMIT")
        except sqlite3.Error as e:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            error = StoreError(f"store write failed: {type(e).__name__}: {e}")
            error.__cause__ = e
            for item in batch:
                if not item.fut.done():
                    item.fut.set_exception(error)
            return
        for fut, result in results:
            if isinstance(result, _Failure):
                fut.set_exception(result.error)
            else:
                fut.set_result(result)

    # --- reads -------------------------------------------------------------------

    def read(self, op: Callable[[sqlite3.Connection], T]) -> T:
        with self._read_lock:
            if self._closed:
                raise StoreError("store read failed: the store is closed")
            try:
                return op(self._reader)
            except sqlite3.Error as e:
                raise StoreError(f"store read failed: {e}") from e

    def close(self) -> None:
        self._queue.put(_STOP)
        self._thread.join(timeout=10)
        self._writer.close()
        # A read still running in a worker thread (its awaiting task was cancelled, the
        # thread was not) must finish first: closing a connection under a running
        # statement crashes the process.
        with self._read_lock:
            self._closed = True
            self._reader.close()


def _mapped(e: Exception) -> Exception:
    """An op's own error as it reaches the caller: a raw sqlite3.Error becomes StoreError."""
    if isinstance(e, sqlite3.Error):
        error = StoreError(f"store write failed: {type(e).__name__}: {e}")
        error.__cause__ = e
        return error
    return e


class _Op:
    __slots__ = ("fut", "op")

    def __init__(self, op: Callable[[sqlite3.Connection], Any], fut: Future[Any]) -> None:
        self.op = op
        self.fut = fut


class _Failure:
    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error
