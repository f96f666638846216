"""Who may use the console: one credential per operator, sessions opened with it, and a throttle.

An operator proves they hold their token either on every request
(``Authorization: Bearer <token>``) or once on the login page, which opens a
random server-side session carried in an HttpOnly, SameSite=Strict cookie.
Each operator has their own token, listed by name with the SHA-256 of the
token in the operators file (``<name> <sha256-hex>`` per line), so the log of
logins names a person; a single shared token file is still read (logged as
``shared-token``) where no operators file is configured. Tokens are compared in
constant time against every entry. Failed attempts are counted per remote
address: past ``MAX_FAILED_LOGINS`` in ``FAILED_LOGIN_WINDOW_S`` every attempt
from that address, right or wrong, is refused until the window has passed
(otherwise the answer to a right guess would still differ). Sessions live in
memory only (a restart logs everyone out), expire, and are bounded in number.
This module reads credential files and keeps state; it does not serve HTTP.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Final

from exchange.core.errors import ConfigError

__all__ = [
    "FAILED_LOGIN_WINDOW_S",
    "MAX_FAILED_LOGINS",
    "MIN_TOKEN_BYTES",
    "SESSION_COOKIE",
    "SESSION_TTL_S",
    "SHARED_OPERATOR",
    "LoginThrottle",
    "Operators",
    "Sessions",
    "bearer_token",
    "load_operators",
    "load_token",
    "token_matches",
]

MIN_TOKEN_BYTES: Final = 16
MAX_TOKEN_BYTES: Final = 4096
SESSION_COOKIE: Final = "liaison_console"
SESSION_TTL_S: Final = 8 * 3600
MAX_SESSIONS: Final = 256
MAX_OPERATORS: Final = 1000
MAX_OPERATORS_FILE_BYTES: Final = 256 * 1024
SHARED_OPERATOR: Final = "shared-token"  # the name logged for the single-token file
MAX_FAILED_LOGINS: Final = 10  # per remote address, in the window below
FAILED_LOGIN_WINDOW_S: Final = 60.0
MAX_TRACKED_REMOTES: Final = 4096
_OPERATOR_NAME: Final = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_SHA256_HEX: Final = re.compile(r"[0-9a-f]{64}")


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


class Operators:
    """The operators' credentials: SHA-256 of each token -> the operator's name."""

    def __init__(self, digests: Mapping[str, bytes]) -> None:
        if not digests:
            raise ConfigError("the console needs at least one operator credential")
        self._entries = tuple(digests.items())

    @classmethod
    def shared(cls, token: bytes) -> Operators:
        return cls({SHARED_OPERATOR: hashlib.sha256(token).digest()})

    def who(self, offered: str | bytes | None) -> str | None:
        """The operator whose token this is, or None; every entry is compared, in constant time."""
        if offered is None:
            return None
        raw = offered.encode("utf-8", "replace") if isinstance(offered, str) else offered
        digest = hashlib.sha256(raw).digest()
        found = None
        for name, expected in self._entries:
            if hmac.compare_digest(expected, digest):
                found = name
        return found


def load_operators(path: Path) -> Operators:
    """``<name> <sha256-hex of the token>`` per line (``#`` comments); names and digests unique."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"console operators file {path} cannot be read: {e.strerror}") from None
    if len(data) > MAX_OPERATORS_FILE_BYTES:
        raise ConfigError(f"console operators file {path} exceeds {MAX_OPERATORS_FILE_BYTES} bytes")
    digests: dict[str, bytes] = {}
    for number, raw in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2 or not _OPERATOR_NAME.fullmatch(parts[0]) or not _SHA256_HEX.fullmatch(parts[1]):
            raise ConfigError(f"{path} line {number}: expected '<operator-name> <sha256 hex of the token>'")
        digest = bytes.fromhex(parts[1])
        if parts[0] in digests or digest in digests.values():
            raise ConfigError(f"{path} line {number}: operator or token listed twice")
        digests[parts[0]] = digest
    if not 0 < len(digests) <= MAX_OPERATORS:
        raise ConfigError(f"{path} must list 1..{MAX_OPERATORS} operators")
    return Operators(digests)


class LoginThrottle:
    """Failed attempts per remote address in a sliding window; past the limit, every attempt waits."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        *,
        limit: int = MAX_FAILED_LOGINS,
        window_s: float = FAILED_LOGIN_WINDOW_S,
    ) -> None:
        self._clock, self._limit, self._window_s = clock, limit, window_s
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, remote: str) -> deque[float]:
        times = self._failures.get(remote, deque())
        cutoff = self._clock() - self._window_s
        while times and times[0] <= cutoff:
            times.popleft()
        return times

    def retry_after_s(self, remote: str) -> int:
        """Seconds until ``remote`` may try again (0: now)."""
        times = self._recent(remote)
        if len(times) < self._limit:
            return 0
        return max(1, int(times[-self._limit] + self._window_s - self._clock()) + 1)

    def failed(self, remote: str) -> None:
        times = self._recent(remote)
        times.append(self._clock())
        while len(times) > self._limit:
            times.popleft()
        self._failures[remote] = times
        self._failures.move_to_end(remote)
        while len(self._failures) > MAX_TRACKED_REMOTES:
            self._failures.popitem(last=False)


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
    """Open sessions by the SHA-256 of their id, with their operator; the oldest goes when too many."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, ttl_s: float = SESSION_TTL_S) -> None:
        self._clock = clock
        self._ttl_s = ttl_s
        self._open: OrderedDict[bytes, tuple[float, str]] = OrderedDict()

    @staticmethod
    def _key(session_id: str) -> bytes:
        return hashlib.sha256(session_id.encode("utf-8", "replace")).digest()

    def open(self, operator: str = SHARED_OPERATOR) -> str:
        session_id = secrets.token_urlsafe(32)
        self._open[self._key(session_id)] = (self._clock() + self._ttl_s, operator)
        while len(self._open) > MAX_SESSIONS:
            self._open.popitem(last=False)
        return session_id

    def operator(self, session_id: str | None) -> str | None:
        """Whose session this is, or None (unknown or expired)."""
        if not session_id or len(session_id) > 128:
            return None
        key = self._key(session_id)
        entry = self._open.get(key)
        if entry is None:
            return None
        if entry[0] <= self._clock():
            del self._open[key]
            return None
        return entry[1]

    def valid(self, session_id: str | None) -> bool:
        return self.operator(session_id) is not None

    def close(self, session_id: str | None) -> None:
        if session_id:
            self._open.pop(self._key(session_id), None)
