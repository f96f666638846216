"""Message ids: UUIDv7 (RFC 9562, section 5.7) in canonical lower-case text.

Generation takes the clock (Unix milliseconds) and the random source as
arguments so that the pure core stays deterministic under test. This module
does not check uniqueness; replay and duplicate detection live with the
stores that remember ids.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Final

from exchange.core.errors import CodecError

__all__ = ["MESSAGE_ID_LENGTH", "check_message_id", "new_message_id", "uuid7_time_ms"]

MESSAGE_ID_LENGTH: Final = 36
_MAX_MS: Final = (1 << 48) - 1
_UUID7: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def new_message_id(now_ms: int, rand: Callable[[int], bytes] = os.urandom) -> str:
    """A UUIDv7: 48-bit ms timestamp, version 7, 74 random bits, RFC 9562 variant."""
    if not 0 <= now_ms <= _MAX_MS:
        raise ValueError("timestamp outside the 48-bit UUIDv7 range")
    random = rand(10)
    if len(random) != 10:
        raise ValueError("random source returned the wrong number of bytes")
    rand_a = int.from_bytes(random[:2]) & 0x0FFF
    rand_b = int.from_bytes(random[2:]) & ((1 << 62) - 1)
    value = (now_ms << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def check_message_id(text: str) -> str:
    """Return ``text`` when it is a canonical lower-case UUIDv7, else raise CodecError."""
    if not isinstance(text, str) or len(text) != MESSAGE_ID_LENGTH or not _UUID7.fullmatch(text):
        raise CodecError("message id is not a canonical UUIDv7")
    return text


def uuid7_time_ms(text: str) -> int:
    """The creation time (Unix ms) embedded in a UUIDv7."""
    check_message_id(text)
    return int(text[:8] + text[9:13], 16)
