"""The directory stream: the one newest signed directory every node starts from.

A mixin of ``exchange.nats.transport.Transport``: ``LIAISON_DIRECTORY`` keeps
only the newest message (``max_msgs_per_subject=1``). ``put_directory`` can be
conditional on the stream's last sequence (``Nats-Expected-Last-Subject-Sequence``),
so a node that checked the version the stream holds cannot overwrite a newer
one published meanwhile.

What it does not: parse or verify directories (the nodes do, with
``exchange.core.directory``), nor log their content.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import nats.errors
import nats.js.errors
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.client import JetStreamContext

from exchange.core.errors import TransportError
from exchange.core.wire import DIRECTORY_STREAM, DIRECTORY_SUBJECT, PRIORITY_MAX, directory_msg_id
from exchange.nats.tasks import raise_if_cancelling

if TYPE_CHECKING:
    from exchange.nats.transport import PubAck

__all__ = ["DirectoryCallback", "DirectoryStream"]

log = structlog.get_logger()

DirectoryCallback = Callable[[bytes], Awaitable[None]]


class DirectoryStream:
    """The directory-stream methods of a transport (``nc``, ``js``, ``publish`` come from it)."""

    nc: Client
    js: JetStreamContext
    _wakeups: set[asyncio.Event]

    async def publish(
        self,
        subject: str,
        payload: bytes,
        msg_id: str,
        priority: int,
        *,
        ack_timeout: float | None = None,
        after_seq: int | None = None,
    ) -> PubAck:
        raise NotImplementedError

    async def put_directory(self, data: bytes, *, after_seq: int | None = None) -> PubAck:
        """Publish a signed directory (only over stream sequence ``after_seq`` when given).

        A conditional publish carries the sequence in its ``Nats-Msg-Id``: a retry of it
        is still deduplicated, but the same bytes published again over a later sequence
        (the stream changed meanwhile) are not swallowed as a duplicate.
        """
        msg_id = directory_msg_id(data) + ("" if after_seq is None else f"-after-{after_seq}")
        return await self.publish(DIRECTORY_SUBJECT, data, msg_id, PRIORITY_MAX, after_seq=after_seq)

    async def last_directory(self) -> tuple[int, bytes] | None:
        """The directory stream's (sequence, bytes), unverified; None if nothing was published."""
        try:
            raw = await self.js.get_last_msg(DIRECTORY_STREAM, DIRECTORY_SUBJECT)
        except nats.js.errors.NotFoundError:
            return None
        except (TimeoutError, nats.errors.Error) as e:
            raise TransportError(f"cannot read the directory stream: {type(e).__name__}") from e
        return (raw.seq or 0), (raw.data or b"")

    async def get_directory(self) -> bytes | None:
        """The newest published directory bytes (unverified), or None if none was published."""
        last = await self.last_directory()
        return None if last is None else last[1]

    async def watch_directory(self, callback: DirectoryCallback, *, resync_interval: float = 30.0) -> None:
        """Call ``callback(bytes)`` with the current directory and each newer one, until cancelled.

        Wakes on a publish to the directory subject, on reconnect, and every
        ``resync_interval`` seconds; the callback (which must verify signature and
        version) sees each stream sequence at most once. Its errors are logged.
        """
        wake = asyncio.Event()
        self._wakeups.add(wake)

        async def on_msg(_: Msg) -> None:
            wake.set()

        sub = await self.nc.subscribe(DIRECTORY_SUBJECT, cb=on_msg)
        seen = 0
        try:
            while True:
                raise_if_cancelling()
                wake.clear()
                pause = resync_interval
                try:
                    last = await self.last_directory()
                except TransportError as e:
                    log.warning("nats.directory.read_failed", error=str(e))
                    last, pause = None, min(resync_interval, 1.0)
                if last is not None and last[0] > seen:
                    seen = last[0]
                    try:
                        await callback(last[1])
                    except Exception as e:  # noqa: BLE001 - a rejected directory must not stop the watcher
                        log.error(  # noqa: TRY400 - no traceback: it could carry directory content
                            "nats.directory.callback_failed", seq=seen, error_type=type(e).__name__
                        )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), timeout=pause)
        finally:
            self._wakeups.discard(wake)
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
