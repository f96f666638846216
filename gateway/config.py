"""The gateway's configuration file (TOML): ``load_gateway_config``.

What it does: reads ``[gateway]``, ``[keys]``, ``[audit]``, ``[directory]``,
``[grpc]``, the optional ``[console]`` and the shared sections
(``exchange.runtime.config``: ``[nats]``, ``[tls]``, ``[metrics]``) into a
frozen ``GatewayConfig``. Relative paths are resolved against the file's
folder; every problem is a one-line ``ConfigError``.

What it does not: opens nothing but the config file (the audit store, keys
and certificates are opened by ``liaison.serve.gateway``).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exchange.core.errors import ConfigError
from exchange.runtime.config import (
    MetricsConfig,
    NatsConfig,
    TlsConfig,
    checked_id,
    load_toml,
    metrics_section,
    nats_section,
    optional_section,
    section,
    tls_section,
)

__all__ = ["ConsoleConfig", "GatewayConfig", "is_loopback", "load_gateway_config"]


@dataclass(frozen=True)
class ConsoleConfig:
    """The gateway's read-only web console: where it listens, who may log in, its TLS.

    ``operators_file``: one credential per operator (``gateway.console.auth``); without it the
    single shared ``token_file``. ``tls_cert``/``tls_key``: the console serves HTTPS; required
    for any address that is not loopback. ``origin``: the console's public origin
    (``https://host:port``) when it is reached through a proxy; else its own scheme and Host.
    """

    listen: str
    token_file: Path
    operators_file: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    origin: str = ""

    @property
    def host_port(self) -> tuple[str, int]:
        host, sep, port = self.listen.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ConfigError(f"[console] listen {self.listen!r} must be host:port")
        return host.strip("[]") or "127.0.0.1", int(port)


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost: reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it may resolve anywhere


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


def _console(path: Path, data: dict[str, Any]) -> ConsoleConfig | None:
    if "console" not in data:
        return None
    s = section(path, data, "console")
    cfg = ConsoleConfig(
        listen=s.text("listen", "127.0.0.1:8080"),
        token_file=s.path_("token_file", "console.token"),
        operators_file=s.opt_path("operators_file"),
        tls_cert=s.opt_path("tls_cert"),
        tls_key=s.opt_path("tls_key"),
        origin=s.text("origin", "").rstrip("/"),
    )
    if (cfg.tls_cert is None) != (cfg.tls_key is None):
        raise ConfigError(f"{path}: [console] needs both tls_cert and tls_key, or neither")
    host, _ = cfg.host_port
    if cfg.tls_cert is None and not is_loopback(host):
        # Fail closed: tokens and session cookies would cross the network in clear.
        raise ConfigError(
            f"{path}: [console] listen {cfg.listen} is not a loopback address and the console has no "
            "TLS: set tls_cert and tls_key, or listen on 127.0.0.1 behind a TLS proxy"
        )
    if cfg.origin and not cfg.origin.startswith(("https://", "http://")):
        raise ConfigError(f"{path}: [console] origin must be scheme://host[:port]")
    return cfg


def load_gateway_config(path: Path) -> GatewayConfig:
    data = load_toml(path)
    node = section(path, data, "gateway")
    keys = section(path, data, "keys")
    audit = optional_section(path, data, "audit")
    return GatewayConfig(
        gateway=checked_id(path, node.text("id"), "gateway"),
        store=audit.path_("store", "audit.db"),
        pg_dsn=audit.text("postgres_dsn", ""),
        tree_head_interval_s=audit.number("tree_head_interval_s", 2.0),
        keys_dir=keys.path_("dir"),
        passphrase_file=keys.opt_path("passphrase_file"),
        directory=section(path, data, "directory").path_("file"),
        nats=nats_section(path, data),
        grpc_listen=section(path, data, "grpc").text("listen"),
        tls=tls_section(path, data),
        console=_console(path, data),
        metrics=metrics_section(path, data),
    )
