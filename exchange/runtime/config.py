"""Node configuration files (TOML) for office nodes and the gateway.

Parses and checks; opens nothing. Relative paths are resolved against the
config file's folder so a bundle can be moved as a whole. Every problem is a
one-line ``ConfigError`` naming the file and the key.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from exchange.core.errors import ConfigError
from exchange.core.model import Suite, check_id

__all__ = [
    "ConsoleConfig",
    "GatewayConfig",
    "MetricsConfig",
    "NatsConfig",
    "OfficeConfig",
    "load_gateway_config",
    "load_office_config",
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
    (empty: any client certificate of the deployment CA).
    """

    ca: Path
    cert: Path
    key: Path
    clients: tuple[str, ...] = ()


@dataclass(frozen=True)
class ConsoleConfig:
    """The gateway's read-only web console: where it listens and the file holding its bearer token."""

    listen: str
    token_file: Path


@dataclass(frozen=True)
class MetricsConfig:
    """Where a node serves its Prometheus metrics over HTTP (``/metrics``): ``host:port``."""

    host: str
    port: int

    @property
    def listen(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class OfficeConfig:
    office: str
    store: Path
    keys_dir: Path
    passphrase_file: Path | None
    directory: Path
    nats: NatsConfig
    grpc_listen: str
    suite: Suite = Suite.CLASSIC
    tls: TlsConfig | None = None
    metrics: MetricsConfig | None = None  # off unless the file has a [metrics] section


@dataclass(frozen=True)
class GatewayConfig:
    gateway: str
    store: Path
    keys_dir: Path
    passphrase_file: Path | None
    directory: Path
    nats: NatsConfig
    grpc_listen: str
    pg_dsn: str = field(default="", repr=False)
    tree_head_interval_s: float = 2.0
    tls: TlsConfig | None = None
    console: ConsoleConfig | None = None  # off unless the file has a [console] section
    metrics: MetricsConfig | None = None  # off unless the file has a [metrics] section


class _Section:
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


def _load(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except OSError as e:  # a directory, no permission...
        raise ConfigError(f"cannot read config file {path}: {e.strerror}") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from e
    except UnicodeDecodeError as e:  # the decode error would quote the file's bytes
        raise ConfigError(f"{path}: not valid TOML: not UTF-8") from e
    except RecursionError as e:
        raise ConfigError(f"{path}: not valid TOML: nested too deeply") from e


def _section(path: Path, data: dict[str, Any], name: str) -> _Section:
    value = data.get(name)
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: section [{name}] is missing")
    return _Section(path, name, value)


def _nats(path: Path, data: dict[str, Any]) -> NatsConfig:
    s = _section(path, data, "nats")
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


def _tls(path: Path, data: dict[str, Any]) -> TlsConfig | None:
    if "tls" not in data:
        return None
    s = _section(path, data, "tls")
    return TlsConfig(ca=s.path_("ca"), cert=s.path_("cert"), key=s.path_("key"), clients=s.texts("clients"))


def _console(path: Path, data: dict[str, Any]) -> ConsoleConfig | None:
    if "console" not in data:
        return None
    s = _section(path, data, "console")
    return ConsoleConfig(
        listen=s.text("listen", "127.0.0.1:8080"), token_file=s.path_("token_file", "console.token")
    )


def _metrics(path: Path, data: dict[str, Any]) -> MetricsConfig | None:
    if "metrics" not in data:
        return None
    s = _section(path, data, "metrics")
    listen = s.text("listen", "127.0.0.1:9464")
    host, sep, port = listen.rpartition(":")
    # isascii: str.isdigit() is also true for digits int() refuses, such as "²".
    if not sep or not (port.isascii() and port.isdigit() and len(port) <= 5) or int(port) > 65535:
        raise ConfigError(f"{path}: [metrics] listen {listen!r} must be host:port")
    return MetricsConfig(host=host.strip("[]") or "127.0.0.1", port=int(port))


def _checked_id(path: Path, value: str, what: str) -> str:
    try:
        return check_id(value, what)
    except ValueError as e:
        raise ConfigError(f"{path}: {e}") from None


def load_office_config(path: Path) -> OfficeConfig:
    data = _load(path)
    node = _section(path, data, "office")
    keys = _section(path, data, "keys")
    try:
        suite = Suite.parse(node.text("suite", "classic"))
    except ValueError as e:
        raise ConfigError(f"{path}: [office] suite: {e}") from None
    return OfficeConfig(
        office=_checked_id(path, node.text("id"), "office"),
        store=node.path_("store", "office.db"),
        keys_dir=keys.path_("dir"),
        passphrase_file=keys.opt_path("passphrase_file"),
        directory=_section(path, data, "directory").path_("file"),
        nats=_nats(path, data),
        grpc_listen=_section(path, data, "grpc").text("listen"),
        suite=suite,
        tls=_tls(path, data),
        metrics=_metrics(path, data),
    )


def load_gateway_config(path: Path) -> GatewayConfig:
    data = _load(path)
    node = _section(path, data, "gateway")
    keys = _section(path, data, "keys")
    audit = _section(path, data, "audit") if "audit" in data else _Section(path, "audit", {})
    return GatewayConfig(
        gateway=_checked_id(path, node.text("id"), "gateway"),
        store=audit.path_("store", "audit.db"),
        pg_dsn=audit.text("postgres_dsn", ""),
        tree_head_interval_s=audit.number("tree_head_interval_s", 2.0),
        keys_dir=keys.path_("dir"),
        passphrase_file=keys.opt_path("passphrase_file"),
        directory=_section(path, data, "directory").path_("file"),
        nats=_nats(path, data),
        grpc_listen=_section(path, data, "grpc").text("listen"),
        tls=_tls(path, data),
        console=_console(path, data),
        metrics=_metrics(path, data),
    )
