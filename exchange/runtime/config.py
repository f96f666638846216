"""The shared part of the nodes' configuration files (TOML): reading and common sections.

What it does: ``load_toml`` reads a file (every foreign error becomes a
one-line ``ConfigError`` naming the file); ``Section`` reads typed keys of
one table; ``nats_section``, ``tls_section`` and ``metrics_section`` build
the sections office nodes and the gateway share. Relative paths are resolved
against the config file's folder so a bundle can be moved as a whole. Every
problem is a one-line ``ConfigError`` naming the file and the key.

What it does not: no node's own settings (``exchange.office.config``,
``gateway.config``), and it opens nothing but the config file itself.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from exchange.core.errors import ConfigError, map_exceptions
from exchange.core.model import check_id

__all__ = [
    "MetricsConfig",
    "NatsConfig",
    "Section",
    "TlsConfig",
    "checked_id",
    "load_toml",
    "metrics_section",
    "nats_section",
    "optional_section",
    "section",
    "tls_section",
]


_MAX_NUMBER: Final = 1e15  # larger values of any numeric setting are typos or attacks


@dataclass(frozen=True)
class NatsConfig:
    url: str
    user: str = ""
    password: str = field(default="", repr=False)
    creds: Path | None = None
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    inbox_prefix: str = ""  # per-office reply subjects, so replies to one office are not readable by another
    replicas: int = 1  # the gateway's streams: 3 in a three-server JetStream cluster

    @property
    def servers(self) -> list[str]:
        """``url`` may list several servers, comma-separated (seeds of a cluster)."""
        return [u.strip() for u in self.url.split(",") if u.strip()]

    domain: str = ""  # JetStream domain of the hub, when the node talks to it through a leaf node server


@dataclass(frozen=True)
class TlsConfig:
    """Server-side mTLS for a node's gRPC listener (CA that signs the clients).

    ``clients``: the agency client certificate names an office node serves
    (an office refuses to start with none: there is no "any client").
    """

    ca: Path
    cert: Path
    key: Path
    clients: tuple[str, ...] = ()


@dataclass(frozen=True)
class MetricsConfig:
    """Where a node serves its Prometheus metrics over HTTP (``/metrics``): ``host:port``."""

    host: str
    port: int

    @property
    def listen(self) -> str:
        return f"{self.host}:{self.port}"


class Section:
    """One table of a config file; each getter raises ConfigError naming the file, table and key."""

    def __init__(self, path: Path, name: str, data: dict[str, Any]) -> None:
        self.path, self.name, self.data = path, name, data

    def _where(self, key: str) -> str:
        return f"{self.path}: [{self.name}] {key}"

    def text(self, key: str, default: str | None = None) -> str:
        value = self.data.get(key, default)
        if value is None:
            raise ConfigError(f"{self._where(key)} is missing")
        if not isinstance(value, str):
            raise ConfigError(f"{self._where(key)} must be a string")
        return value

    def texts(self, key: str) -> tuple[str, ...]:
        value = self.data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{self._where(key)} must be a list of strings")
        return tuple(value)

    def path_(self, key: str, default: str | None = None) -> Path:
        try:
            return (self.path.parent / self.text(key, default)).resolve()
        except (ValueError, OSError) as e:  # an embedded NUL, a symlink loop...
            raise ConfigError(f"{self._where(key)} is not a usable path") from e

    def opt_path(self, key: str) -> Path | None:
        return self.path_(key) if key in self.data else None

    def number(self, key: str, default: float) -> float:
        value = self.data.get(key, default)
        # TOML allows nan, inf and integers too big for a float; refuse them all.
        if not isinstance(value, int | float) or not 0 < value < _MAX_NUMBER:
            raise ConfigError(f"{self._where(key)} must be a positive number")
        return float(value)


def load_toml(path: Path) -> dict[str, Any]:
    """The parsed file; a missing, unreadable or malformed file is a ConfigError naming it."""
    with map_exceptions({OSError: ConfigError}, f"cannot read config file {path}"):
        f = path.open("rb")  # a missing file, a directory, no permission...
    # UnicodeDecodeError and RecursionError: reason() names them without quoting the file's bytes.
    toml_errors = {
        tomllib.TOMLDecodeError: ConfigError,
        UnicodeDecodeError: ConfigError,
        RecursionError: ConfigError,
    }
    with f, map_exceptions(toml_errors, f"{path}: not valid TOML"):
        return tomllib.load(f)


def section(path: Path, data: dict[str, Any], name: str) -> Section:
    value = data.get(name)
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: section [{name}] is missing")
    return Section(path, name, value)


def optional_section(path: Path, data: dict[str, Any], name: str) -> Section:
    """Table ``name``, or an empty one (every key takes its default) when the file has none."""
    return section(path, data, name) if name in data else Section(path, name, {})


def nats_section(path: Path, data: dict[str, Any]) -> NatsConfig:
    s = section(path, data, "nats")
    return NatsConfig(
        url=s.text("url"),
        user=s.text("user", ""),
        password=s.text("password", ""),
        creds=s.opt_path("creds"),
        ca=s.opt_path("ca"),
        cert=s.opt_path("cert"),
        key=s.opt_path("key"),
        inbox_prefix=s.text("inbox_prefix", ""),
        replicas=int(s.number("replicas", 1)),
        domain=s.text("domain", ""),
    )


def tls_section(path: Path, data: dict[str, Any]) -> TlsConfig | None:
    if "tls" not in data:
        return None
    s = section(path, data, "tls")
    return TlsConfig(ca=s.path_("ca"), cert=s.path_("cert"), key=s.path_("key"), clients=s.texts("clients"))


def metrics_section(path: Path, data: dict[str, Any]) -> MetricsConfig | None:
    if "metrics" not in data:
        return None
    s = section(path, data, "metrics")
    listen = s.text("listen", "127.0.0.1:9464")
    host, sep, port = listen.rpartition(":")
    # isascii: str.isdigit() is also true for digits int() refuses, such as "²".
    if not sep or not (port.isascii() and port.isdigit() and len(port) <= 5) or int(port) > 65535:
        raise ConfigError(f"{path}: [metrics] listen {listen!r} must be host:port")
    return MetricsConfig(host=host.strip("[]") or "127.0.0.1", port=int(port))


def checked_id(path: Path, value: str, what: str) -> str:
    with map_exceptions({ValueError: ConfigError}, str(path)):
        return check_id(value, what)
