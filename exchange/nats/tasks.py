"""Task helpers of the NATS shell's loops.

What it does: ``raise_if_cancelling`` lets a loop honour one ``cancel()``.
What it does not: no NATS calls.
"""

from __future__ import annotations

import asyncio

__all__ = ["raise_if_cancelling"]


def raise_if_cancelling() -> None:
    """Raise ``CancelledError`` if the current task was asked to stop.

    Python 3.11's ``asyncio.wait_for`` can swallow a cancellation that arrives as its
    inner await completes (fixed in 3.12); a loop around it would then run on until
    cancelled again. Loops call this each round so that one ``cancel()`` stops them.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
