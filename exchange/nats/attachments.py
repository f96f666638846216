"""The attachment stream: sealed chunks on JetStream, published and fetched one by one.

What it does: creates ``LIAISON_ATTACH`` (file storage, limits retention with a
named maximum age and size), publishes sealed chunks on
``liaison.v1.attach.<owner>.<attachment-id>.<index>`` with ``Nats-Msg-Id`` (so
a retried upload does not store a chunk twice) through a bounded window of
in-flight publishes, and fetches chunks back by subject with JetStream's direct
get (``$JS.API.DIRECT.GET.LIAISON_ATTACH.<subject>``), a bounded number ahead.
At most ``WINDOW`` chunks are in memory at once on either side.

What it does not do: it never opens, checks or logs chunk bytes (they are
sealed by ``exchange.core.attachments``) and it does not decide who may fetch what:
NATS permissions (``exchange.nats.permissions``) let an office publish only under its
own prefix and fetch only by exact subject, which needs the unguessable id.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator
from typing import Final

import nats.errors
import nats.js.errors
from nats.js import api

from exchange.core.errors import AttachmentMissingError, TransportError
from exchange.core.wire import (
    ATTACH_MAX_AGE_S,
    ATTACH_MAX_BYTES,
    ATTACH_MAX_MSG_SIZE,
    ATTACH_PREFIX,
    ATTACH_STREAM,
    DUPLICATE_WINDOW_S,
    attach_subject,
)
from exchange.nats.transport import Transport

__all__ = [
    "WINDOW",
    "ChunkPublisher",
    "ensure_attach_stream",
    "fetch_chunks",
]

# Chunks in flight per upload or download: bounds memory (WINDOW x 1 MiB) and keeps the link busy.
WINDOW: Final = 8
_CHUNK_PRIORITY: Final = 1


def attach_stream_config(replicas: int = 1) -> api.StreamConfig:
    # DiscardPolicy.NEW: a full stream refuses uploads (the agency sees the error) rather
    # than silently dropping chunks of attachments already sent.
    return api.StreamConfig(
        name=ATTACH_STREAM,
        subjects=[f"{ATTACH_PREFIX}.>"],
        num_replicas=replicas,
        retention=api.RetentionPolicy.LIMITS,
        storage=api.StorageType.FILE,
        duplicate_window=DUPLICATE_WINDOW_S,
        max_msg_size=ATTACH_MAX_MSG_SIZE,
        max_age=ATTACH_MAX_AGE_S,
        max_bytes=ATTACH_MAX_BYTES,
        discard=api.DiscardPolicy.NEW,
        allow_direct=True,
    )


async def ensure_attach_stream(transport: Transport, *, replicas: int = 1) -> None:
    """Create or update LIAISON_ATTACH (idempotent); the gateway does this, offices cannot."""
    config = attach_stream_config(replicas)
    try:
        try:
            await transport.js.stream_info(ATTACH_STREAM)
        except nats.js.errors.NotFoundError:
            await transport.js.add_stream(config)
        else:
            await transport.js.update_stream(config)
    except (TimeoutError, nats.errors.Error) as e:
        raise TransportError(f"cannot create or update stream {ATTACH_STREAM}: {e}") from e


class ChunkPublisher:
    """Publishes one attachment's chunks with at most ``WINDOW`` acks outstanding."""

    def __init__(self, transport: Transport, owner: str, attachment_id: str) -> None:
        self._transport = transport
        self._owner = owner
        self._id = attachment_id
        self._in_flight: set[asyncio.Task[object]] = set()
        self.published = 0

    async def put(self, index: int, sealed: bytes) -> None:
        while len(self._in_flight) >= WINDOW:
            await self._wait_one()
        subject = attach_subject(self._owner, self._id, index)
        task = asyncio.create_task(
            self._transport.publish(subject, sealed, f"attach.{self._id}.{index}", _CHUNK_PRIORITY)
        )
        self._in_flight.add(task)

    async def _wait_one(self) -> None:
        done, _ = await asyncio.wait(self._in_flight, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            self._in_flight.discard(task)
            task.result()  # a TransportError ends the upload
            self.published += 1

    async def drain(self) -> None:
        """Wait for every outstanding ack; raises the first publish failure."""
        while self._in_flight:
            await self._wait_one()

    async def abort(self) -> None:
        for task in self._in_flight:
            task.cancel()
        for task in self._in_flight:
            with contextlib.suppress(BaseException):
                await task
        self._in_flight.clear()


async def _get(transport: Transport, subject: str) -> bytes:
    try:
        raw = await transport.js.get_last_msg(ATTACH_STREAM, subject, direct=True)
    except nats.js.errors.NotFoundError as e:
        raise AttachmentMissingError(f"attachment chunk {subject.rsplit('.', 2)[-2:]} is not stored") from e
    except (TimeoutError, nats.errors.Error) as e:
        raise TransportError(f"cannot fetch an attachment chunk: {type(e).__name__}") from e
    return raw.data or b""


async def fetch_chunks(
    transport: Transport, owner: str, attachment_id: str, count: int
) -> AsyncIterator[tuple[int, bytes]]:
    """Yield (index, sealed chunk) for 0..count-1 in order, prefetching up to ``WINDOW`` ahead."""
    pending: deque[asyncio.Task[bytes]] = deque()
    next_index = 0
    try:
        for index in range(count):
            while next_index < count and len(pending) < WINDOW:
                pending.append(
                    asyncio.create_task(_get(transport, attach_subject(owner, attachment_id, next_index)))
                )
                next_index += 1
            yield index, await pending.popleft()
    finally:
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(BaseException):
                await task
