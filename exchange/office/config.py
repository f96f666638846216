"""An office node's configuration file (TOML): ``load_office_config``.

What it does: reads ``[office]``, ``[keys]``, ``[directory]``, ``[grpc]``
and the shared sections (``exchange.runtime.config``: ``[nats]``, ``[tls]``,
``[metrics]``) into a frozen ``OfficeConfig``. Relative paths are resolved
against the file's folder; every problem is a one-line ``ConfigError``.

What it does not: opens nothing but the config file (keys, stores and
certificates are opened by the node process, ``liaison.serve.office``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from exchange.core.errors import ConfigError, map_exceptions
from exchange.core.model import Suite
from exchange.runtime.config import (
    MetricsConfig,
    NatsConfig,
    TlsConfig,
    checked_id,
    load_toml,
    metrics_section,
    nats_section,
    section,
    tls_section,
)

__all__ = ["OfficeConfig", "load_office_config"]


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


def load_office_config(path: Path) -> OfficeConfig:
    data = load_toml(path)
    node = section(path, data, "office")
    keys = section(path, data, "keys")
    with map_exceptions({ValueError: ConfigError}, f"{path}: [office] suite"):
        suite = Suite.parse(node.text("suite", "classic"))
    tls = tls_section(path, data)
    if tls is not None and not tls.clients:
        # Fail closed: no list would mean every agency certificate of the deployment, the other
        # offices' agency systems included.
        raise ConfigError(
            f"{path}: [tls] clients is empty: name the agency client certificates this office serves "
            "(one per agency system)"
        )
    return OfficeConfig(
        office=checked_id(path, node.text("id"), "office"),
        store=node.path_("store", "office.db"),
        keys_dir=keys.path_("dir"),
        passphrase_file=keys.opt_path("passphrase_file"),
        directory=section(path, data, "directory").path_("file"),
        nats=nats_section(path, data),
        grpc_listen=section(path, data, "grpc").text("listen"),
        suite=suite,
        tls=tls,
        metrics=metrics_section(path, data),
    )
