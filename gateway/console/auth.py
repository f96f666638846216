"""Who may use the console: one configured bearer token, and sessions opened with it.

An operator proves they hold the token either on every request
(``Authorization: Bearer <token>``) or once on the login page, which opens a
random server-side session carried in an HttpOnly, SameSite=Strict cookie.
Tokens are compared in constant time. Sessions live in memory only (a
restart logs everyone out), expire, and are bounded in number. This module
reads the token file and keeps sessions; it does not serve HTTP.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Final

from exchange.core.errors import ConfigError

__all__ = [
    "MIN_TOKEN_BYTES",
    "SESSION_COOKIE",
    "SESSION_TTL_S",
    "Sessions",
    "bearer_token",
    "load_token",
    "token_matches",
]

MIN_TOKEN_BYTES: Final = 16
MAX_TOKEN_BYTES: Final = 4096
SESSION_COOKIE: Final = "liaison_console"
SESSION_TTL_S: Final = 8 * 3600
MAX_SESSIONS: Final = 256


def load_token(path: Path) -> bytes:
    """The console token from its file (surrounding whitespace dropped); never echoed in errors."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"console token file {path} cannot be read: {e.strerror}") from None
    token = data.strip()
    if not MIN_TOKEN_BYTES <= len(token) <= MAX_TOKEN_BYTES:
        raise ConfigError(f"console token in {path} must be {MIN_TOKEN_BYTES}..{MAX_TOKEN_BYTES} bytes")
    if any(b < 0x21 or b > 0x7E for b in token):
        raise ConfigError(f"console token in {path} must be printable ASCII without spaces")
    return token


def token_matches(expected: bytes, offered: str | bytes | None) -> bool:
    """Constant-time comparison (over digests, so the length does not leak either)."""
    if offered is None:
        return False
    raw = offered.encode("utf-8", "replace") if isinstance(offered, str) else offered
    return hmac.compare_digest(hashlib.sha256(expected).digest(), hashlib.sha256(raw).digest())


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer …`` header, if that is what it is."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


class Sessions:
    """Open sessions by the SHA-256 of their id; the oldest goes when there are too many."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, ttl_s: float = SESSION_TTL_S) -> None:
        self._clock = clock
        self._ttl_s = ttl_s
        self._expiry: OrderedDict[bytes, float] = OrderedDict()

    @staticmethod
    def _key(session_id: str) -> bytes:
        return hashlib.sha256(session_id.encode("utf-8", "replace")).digest()

    def open(self) -> str:
        session_id = secrets.token_urlsafe(32)
        self._expiry[self._key(session_id)] = self._clock() + self._ttl_s
        while len(self._expiry) > MAX_SESSIONS:
            self._expiry.popitem(last=False)
        return session_id

    def valid(self, session_id: str | None) -> bool:
        if not session_id or len(session_id) > 128:
            return False
        key = self._key(session_id)
        expiry = self._expiry.get(key)
        if expiry is None:
            return False
        if expiry <= self._clock():
            del self._expiry[key]
            return False
        return True

    def close(self, session_id: str | None) -> None:
        if session_id:
            self._expiry.pop(self._key(session_id), None)
