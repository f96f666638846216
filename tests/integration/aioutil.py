"""Async helpers shared by the transport-level integration tests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from typing import Any, Final

from exchange.nats.transport import BatchHandler, Delivered

WAIT: Final = 15.0


@contextlib.asynccontextmanager
async def running(coro: Coroutine[Any, Any, None]) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``coro`` as a task for the block; cancel it after and wait (bounded) for its end."""
    task = asyncio.create_task(coro)
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=WAIT)


def each(handler: Callable[[Delivered], Awaitable[None]]) -> BatchHandler:
    """A batch handler that runs ``handler`` on each item in turn; its exception is the item's outcome."""

    async def batch(items: Sequence[Delivered]) -> list[BaseException | None]:
        outcomes: list[BaseException | None] = []
        for item in items:
            try:
                await handler(item)
            except Exception as e:
                outcomes.append(e)
            else:
                outcomes.append(None)
        return outcomes

    return batch
