"""The one wall clock: milliseconds since the Unix epoch, and the type of an injected clock.

Pure code takes the time as an argument (``now_ms: int``); the shells take a
``Clock`` (default ``now_ms``) so that tests can pass a fixed one. Nothing
else in the code reads the wall clock for a timestamp.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["Clock", "now_ms"]

Clock = Callable[[], int]


def now_ms() -> int:
    """Wall-clock milliseconds since the Unix epoch."""
    return time.time_ns() // 1_000_000
