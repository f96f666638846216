"""A cancellation swallowed by Python 3.11's ``asyncio.wait_for`` still stops our loops."""

from __future__ import annotations

import asyncio

import pytest

from exchange.nats.transport import raise_if_cancelling


async def test_a_swallowed_cancellation_is_raised_at_the_next_round() -> None:
    rounds = 0
    swallowed = asyncio.Event()

    async def loop() -> None:
        nonlocal rounds
        while True:
            raise_if_cancelling()
            rounds += 1
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                if swallowed.is_set():
                    raise
                swallowed.set()  # what the 3.11 wait_for race does: the first cancel is lost here

    task = asyncio.create_task(loop())
    await asyncio.sleep(0.05)
    task.cancel()
    await asyncio.wait_for(swallowed.wait(), timeout=5)
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, timeout=5)
    assert rounds >= 1


async def test_an_uncancelled_task_runs_on() -> None:
    raise_if_cancelling()  # no error outside a cancellation
