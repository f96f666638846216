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

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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

__all__ = ["ConsoleConfig", "GatewayConfig", "load_gateway_config"]


@dataclass(frozen=True)
class ConsoleConfig:
    """The gateway's read-only web console: where it listens and the file holding its bearer token."""

    listen: str
    token_file: Path


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
    return ConsoleConfig(
        listen=s.text("listen", "127.0.0.1:8080"), token_file=s.path_("token_file", "console.token")
    )


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
