"""nats-server configs for a real deployment: a JetStream hub cluster and one leaf node per office.

Pure: renders text from a :class:`keys.inventory.SiteInventory`, certificate
paths and subject DNs; reads and writes nothing.

- Hub server: client listener with mutual TLS (``verify_and_map``), a
  ``cluster {}`` block whose routes use mutual TLS and admit only the hub's
  own route certificate (mapped by its SPIFFE URI), a ``leafnodes { listen }``
  block with mutual TLS, and JetStream in the hub's ``domain``. Accounts
  (``exchange.nats.permissions.render_accounts``, ADR 0011): the streams and
  the gateway in ``LIAISON``; each office *leaf link* a user in the office's
  own account, which holds only the service and stream imports its node
  needs. Whatever an office's leaf server sends (a reply subject, an ack of
  another office's delivery) lands in that account, where nothing else
  exists; the user's permissions narrow it further.
- Office site: a leaf node server with JetStream in its own domain (for a
  later store-and-forward stream), a client listener for the office node
  only (mutual TLS, the office's subject permissions), and ``leafnodes { remotes }`` to
  every hub server over TLS with the site's certificate.

What it does not: start servers (``liaison.natsserver`` does for the lab and
tests) or decide permissions (``exchange.nats.permissions`` does).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from exchange.core.errors import ConfigError
from exchange.core.wire import OFFICE_JS_DOMAIN
from exchange.nats.permissions import office_permissions, render_accounts
from keys.inventory import HubServer, OfficeSite, SiteInventory
from liaison.natsserver import DEFAULT_MAX_FILE_STORE, DEFAULT_MAX_PAYLOAD

__all__ = ["TlsPaths", "hub_config", "leaf_config", "route_user"]

TLS_TIMEOUT_S: Final = 5


@dataclass(frozen=True)
class TlsPaths:
    ca: Path
    cert: Path
    key: Path


def route_user(cluster: str) -> str:
    """The identity every hub route certificate carries (its URI SAN): only it may join the cluster."""
    return f"spiffe://liaison/node/{cluster}-route"


def _q(value: str | Path) -> str:
    return json.dumps(str(value))  # a JSON string is a valid nats-server config string


def _tls(paths: TlsPaths, mode: str | None, indent: int) -> str:
    """A ``tls {}`` block; ``mode`` is ``verify_and_map`` (servers) or None (a leaf remote: client side)."""
    lines = [
        f"cert_file: {_q(paths.cert)}",
        f"key_file: {_q(paths.key)}",
        f"ca_file: {_q(paths.ca)}",
        f"timeout: {TLS_TIMEOUT_S}",
    ]
    if mode:
        lines.append(f"{mode}: true")
    pad = " " * indent
    return f"{pad}tls {{\n" + "".join(f"{pad}  {line}\n" for line in lines) + f"{pad}}}"


def _users(users: Sequence[Mapping[str, Any]]) -> str:
    body = json.dumps(list(users), indent=2).replace("\n", "\n  ")
    return f"authorization {{\n  users: {body}\n}}"


def _jetstream(store: Path, domain: str) -> str:
    return (
        "jetstream {\n"
        f"  store_dir: {_q(store)}\n"
        f"  domain: {_q(domain)}\n"
        "  sync_interval: always\n"
        f"  max_file_store: {DEFAULT_MAX_FILE_STORE}\n"
        "}"
    )


def hub_config(
    site: SiteInventory,
    server: HubServer,
    *,
    client_tls: TlsPaths,
    route_tls: TlsPaths,
    store: Path,
    gateway_dn: str,
    leaf_dns: Mapping[str, str],
) -> str:
    """One hub server: clients (the gateway), routes to the other hub servers, office leaf links."""
    hub = site.hub
    if hub.domain == OFFICE_JS_DOMAIN:
        raise ConfigError(
            f"the hub's JetStream domain must not be {OFFICE_JS_DOMAIN!r} (the offices' API name)"
        )
    accounts = render_accounts(gateway_dns=[gateway_dn], office_dns={o: [dn] for o, dn in leaf_dns.items()})
    routes = [f"nats-route://{s.host}:{s.cluster_port}" for s in hub.servers if s is not server]
    parts = [
        f"# nats-server {server.name}: JetStream hub of {site.deployment} (rendered by liaison deploy)",
        f"server_name: {_q(server.name)}",
        f"listen: {_q(f'{server.bind}:{server.client_port}')}",
        f"http: {_q(f'127.0.0.1:{server.monitor_port}')}",
        f"max_payload: {DEFAULT_MAX_PAYLOAD}",
        _jetstream(store, hub.domain),
        _tls(client_tls, "verify_and_map", 0),
        accounts,
    ]
    if len(hub.servers) > 1:
        parts.append(
            "cluster {\n"
            f"  name: {_q(hub.cluster)}\n"
            f"  listen: {_q(f'{server.bind}:{server.cluster_port}')}\n"
            f"{_tls(route_tls, 'verify_and_map', 2)}\n"
            f"  authorization {{ user: {_q(route_user(hub.cluster))} }}\n"
            f"  routes: {json.dumps(routes)}\n"
            "}"
        )
    parts.append(
        "leafnodes {\n"
        f"  listen: {_q(f'{server.bind}:{server.leaf_port}')}\n"
        f"{_tls(client_tls, 'verify_and_map', 2)}\n"
        "}"
    )
    return "\n".join(parts) + "\n"


def leaf_config(
    site: SiteInventory, office: OfficeSite, *, tls: TlsPaths, store: Path, office_dn: str
) -> str:
    """The office site's leaf node server: the office node is its only client."""
    urls = [f"nats-leaf://{s.host}:{s.leaf_port}" for s in site.hub.servers]
    user = {"user": office_dn, "permissions": office_permissions(office.id)}
    parts = [
        f"# nats-server {office.nats_name}: leaf node of office {office.id} (rendered by liaison deploy)",
        f"server_name: {_q(office.nats_name)}",
        f"listen: {_q(f'{office.nats_bind}:{office.nats_port}')}",
        f"max_payload: {DEFAULT_MAX_PAYLOAD}",
        _jetstream(store, office.domain),
        _tls(tls, "verify_and_map", 0),
        _users([user]),
        "leafnodes {\n  remotes: [\n    {\n"
        f"      urls: {json.dumps(urls)}\n"
        f"{_tls(tls, None, 6)}\n"
        "    }\n  ]\n}",
    ]
    return "\n".join(parts) + "\n"
