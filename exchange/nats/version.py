"""Which nats-server versions Liaison runs on: those that enforce leaf-node permissions.

nats-server enforces the permissions of a leaf-node connection only from
2.14.0, and on the 2.12 line from 2.12.7 (NOTES.md). Older servers let a
hostile office leaf server publish and subscribe outside its own subjects,
so a node refuses to start against one (the INFO version on connect) and
`liaison deploy check` refuses such a binary (``nats-server --version``).
``check_nats_server_version`` parses the version text and raises; it does
no I/O.
"""

from __future__ import annotations

import re
from typing import Final

from exchange.core.errors import ConfigError

__all__ = ["MIN_NATS_SERVER", "MIN_NATS_SERVER_PATCHED", "check_nats_server_version", "parse_version"]

MIN_NATS_SERVER: Final = (2, 14, 0)
MIN_NATS_SERVER_PATCHED: Final = (2, 12, 7)  # the one older line with the fix backported
MAX_VERSION_TEXT: Final = 200
# "2.15.1", "v2.15.1", "nats-server: v2.15.1", "2.14.0-RC.2", "2.12.7+build"
_VERSION: Final = re.compile(
    r"(?:nats-server:\s*)?v?(\d{1,4})\.(\d{1,4})\.(\d{1,4})(-[0-9A-Za-z.-]+)?(\+\S*)?"
)


def parse_version(text: str) -> tuple[tuple[int, int, int], bool]:
    """``(major, minor, patch)`` and whether it is a pre-release; ConfigError if not a version."""
    if len(text) > MAX_VERSION_TEXT:
        raise ConfigError(f"nats-server version text of {len(text)} characters exceeds {MAX_VERSION_TEXT}")
    m = _VERSION.fullmatch(text.strip())
    if m is None:
        raise ConfigError(f"cannot read a nats-server version from {text.strip()[:60]!r}")
    return (int(m[1]), int(m[2]), int(m[3])), m[4] is not None


def check_nats_server_version(text: str, where: str = "nats-server") -> None:
    """None if the version enforces leaf-node permissions; ConfigError naming the minimum if not.

    A pre-release of a minimum version is refused (it may predate the fix).
    """
    version, prerelease = parse_version(text)
    shown = ".".join(map(str, version)) + ("-pre" if prerelease else "")
    on_patched_line = version[:2] == MIN_NATS_SERVER_PATCHED[:2]
    floor = MIN_NATS_SERVER_PATCHED if on_patched_line else MIN_NATS_SERVER
    if version > floor or (version == floor and not prerelease):
        return
    raise ConfigError(
        f"{where} is version {shown}, which does not enforce leaf-node permissions: need "
        f"{'.'.join(map(str, MIN_NATS_SERVER))} or later (or {'.'.join(map(str, MIN_NATS_SERVER_PATCHED))} "
        "on the 2.12 line)"
    )
