"""A deployment inventory with sites: where every node runs, on which host and ports.

What it does: reads the same TOML file as :func:`keys.deployment.load_inventory`
(which it calls, so the lab's inventories keep working unchanged) and the
extra, optional tables a real deployment needs: ``[[countries]]``,
``[[embassies]]``, host and ports on ``[gateway]`` and on every
``[[offices]]`` entry, the NATS hub (``[hub]`` with ``[[hub.servers]]``), the
witness (``[witness]``) and install paths (``[install]``). Checks that names
refer to each other and that no host:port is used twice.

What it does not: open sockets, create keys or write files (``liaison.bundles.render``
renders bundles from a :class:`SiteInventory`). Nothing here names a country.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from exchange.core import model
from exchange.core.errors import ConfigError
from keys.deployment import Inventory, load_inventory

__all__ = [
    "Country",
    "Embassy",
    "GatewaySite",
    "Hub",
    "HubServer",
    "Install",
    "OfficeSite",
    "SiteInventory",
    "WitnessSite",
    "load_site_inventory",
]

DEFAULT_BIND: Final = "0.0.0.0"  # noqa: S104 - nodes serve remote clients; firewalls narrow it
_MAX_PORT: Final = 65535


@dataclass(frozen=True)
class Install:
    """Where bundles, state and credentials live on the target hosts."""

    config_dir: Path = Path("/etc/liaison")  # a bundle is installed as <config_dir>/<node>
    state_dir: Path = Path("/var/lib/liaison")  # a node's writable state: <state_dir>/<node>
    credentials_dir: Path = Path("/etc/liaison/credentials")  # <node>.passphrase, for LoadCredential=
    passphrase_file: str = "/run/credentials/{unit}/passphrase"  # noqa: S105 - a path template, not a secret
    liaison: Path = Path("/opt/liaison/bin/liaison")
    nats_server: Path = Path("/usr/local/bin/nats-server")
    user: str = "liaison"


@dataclass(frozen=True)
class Country:
    code: str
    name: str


@dataclass(frozen=True)
class Embassy:
    id: str
    country: str
    name: str
    city: str = ""


@dataclass(frozen=True)
class HubServer:
    name: str
    host: str
    client_port: int
    cluster_port: int
    leaf_port: int
    monitor_port: int
    bind: str = DEFAULT_BIND


@dataclass(frozen=True)
class Hub:
    """The JetStream cluster at the gateway's embassy; offices reach it through their leaf nodes."""

    cluster: str
    domain: str
    embassy: str
    servers: tuple[HubServer, ...]


@dataclass(frozen=True)
class GatewaySite:
    id: str
    embassy: str
    host: str
    grpc_port: int
    bind: str = DEFAULT_BIND


@dataclass(frozen=True)
class WitnessSite:
    authority: str  # the witness co-signs with this authority's key
    embassy: str
    host: str
    interval_s: float = 10.0

    @property
    def name(self) -> str:
        return f"{self.authority}-witness"


@dataclass(frozen=True)
class OfficeSite:
    id: str
    host: str
    grpc_port: int
    nats_port: int  # the office's own leaf node server
    bind: str = DEFAULT_BIND
    suite: str = "classic"
    nats_bind: str = "127.0.0.1"  # only the office node, on the same host, talks to its leaf server
    # One client certificate per agency system (each with its own call budget and its own name in
    # the node's logs); none listed: one certificate for the office's agency systems, "<id>-agency".
    agency_systems: tuple[str, ...] = ()

    @property
    def agency_clients(self) -> dict[str, str]:
        """The agency client certificate names this office serves, by the system they are for."""
        if not self.agency_systems:
            return {"agency": f"{self.id}-agency"}
        return {system: f"{self.id}-{system}" for system in self.agency_systems}

    @property
    def nats_url_host(self) -> str:
        return self.host if self.nats_bind == DEFAULT_BIND else self.nats_bind

    @property
    def domain(self) -> str:
        return self.id  # the leaf server's own JetStream domain

    @property
    def nats_name(self) -> str:
        return f"{self.id}-nats"


@dataclass(frozen=True)
class SiteInventory:
    inventory: Inventory
    countries: tuple[Country, ...]
    embassies: tuple[Embassy, ...]
    hub: Hub
    gateway: GatewaySite
    witness: WitnessSite | None
    offices: tuple[OfficeSite, ...]
    install: Install

    @property
    def deployment(self) -> str:
        return self.inventory.deployment

    def listeners(self) -> Iterator[tuple[str, str, int]]:
        """(what, host, port) of every listening socket in the deployment."""
        for s in self.hub.servers:
            yield f"{s.name} client", s.host, s.client_port
            yield f"{s.name} cluster", s.host, s.cluster_port
            yield f"{s.name} leafnode", s.host, s.leaf_port
            yield f"{s.name} monitoring", s.host, s.monitor_port
        yield f"{self.gateway.id} gRPC", self.gateway.host, self.gateway.grpc_port
        for o in self.offices:
            yield f"{o.id} gRPC", o.host, o.grpc_port
            yield f"{o.id} NATS", o.host, o.nats_port


# --- parsing ---------------------------------------------------------------------------------


class _Table:
    def __init__(self, path: Path, where: str, data: Any) -> None:
        if not isinstance(data, dict):
            raise ConfigError(f"inventory {path}: {where} must be a table")
        self.path, self.where, self.data = path, where, data

    def _fail(self, key: str, what: str) -> ConfigError:
        return ConfigError(f"inventory {self.path}: {self.where}.{key} {what}")

    def text(self, key: str, default: str | None = None) -> str:
        value = self.data.get(key, default)
        if value is None:
            raise self._fail(key, "is missing")
        if not isinstance(value, str) or not value:
            raise self._fail(key, "must be a non-empty string")
        return value

    def ident(self, key: str, default: str | None = None) -> str:
        try:
            return model.check_id(self.text(key, default), key)
        except ValueError as e:
            raise self._fail(key, f"is not a valid id: {e}") from None

    def idents(self, key: str) -> tuple[str, ...]:
        """An optional array of distinct ids (empty when absent)."""
        value = self.data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self._fail(key, "must be an array of strings")
        if len(set(value)) != len(value):
            raise self._fail(key, "lists a name twice")
        try:
            return tuple(model.check_id(v, key) for v in value)
        except ValueError as e:
            raise self._fail(key, f"has an invalid id: {e}") from None

    def port(self, key: str) -> int:
        value = self.data.get(key)
        if value is None:
            raise self._fail(key, "is missing")
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= _MAX_PORT:
            raise self._fail(key, f"must be a port number 1..{_MAX_PORT}")
        return value

    def number(self, key: str, default: float) -> float:
        value = self.data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1e9:
            raise self._fail(key, "must be a positive number")
        return float(value)

    def tables(self, key: str) -> list[_Table]:
        value = self.data.get(key, [])
        if not isinstance(value, list):
            raise self._fail(key, "must be an array of tables")
        return [_Table(self.path, f"{key}[{i}]", v) for i, v in enumerate(value)]


def _install(t: _Table) -> Install:
    d = Install()
    return Install(
        config_dir=Path(t.text("config_dir", str(d.config_dir))),
        state_dir=Path(t.text("state_dir", str(d.state_dir))),
        credentials_dir=Path(t.text("credentials_dir", str(d.credentials_dir))),
        passphrase_file=t.text("passphrase_file", d.passphrase_file),
        liaison=Path(t.text("liaison", str(d.liaison))),
        nats_server=Path(t.text("nats_server", str(d.nats_server))),
        user=t.text("user", d.user),
    )


def _hub(t: _Table) -> Hub:
    servers = tuple(
        HubServer(
            name=s.ident("name"),
            host=s.text("host"),
            bind=s.text("bind", DEFAULT_BIND),
            client_port=s.port("client_port"),
            cluster_port=s.port("cluster_port"),
            leaf_port=s.port("leaf_port"),
            monitor_port=s.port("monitor_port"),
        )
        for s in t.tables("servers")
    )
    if not servers:
        raise ConfigError(f"inventory {t.path}: [hub] needs at least one [[hub.servers]] entry")
    if len(servers) > 1 and len(servers) % 2 == 0:
        raise ConfigError(f"inventory {t.path}: [hub] needs an odd number of servers (JetStream quorum)")
    return Hub(
        cluster=t.ident("cluster", "liaison-hub"),
        domain=t.ident("domain", "hub"),
        embassy=t.ident("embassy"),
        servers=servers,
    )


def load_site_inventory(path: Path) -> SiteInventory:
    """Parse and cross-check an inventory with sites; raise ConfigError naming the key on error."""
    inv = load_inventory(path)
    try:
        doc = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:  # load_inventory has read it already; be safe
        raise ConfigError(f"inventory {path}: {e}") from e
    top = _Table(path, "inventory", doc)
    countries = tuple(Country(c.text("code"), c.text("name")) for c in top.tables("countries"))
    embassies = tuple(
        Embassy(e.ident("id"), e.text("country"), e.text("name"), e.text("city", "-"))
        for e in top.tables("embassies")
    )
    if "hub" not in doc:
        raise ConfigError(f"inventory {path}: [hub] is missing (the NATS cluster at the gateway's embassy)")
    hub = _hub(_Table(path, "hub", doc["hub"]))
    g = _Table(path, "gateway", doc["gateway"])
    gateway = GatewaySite(
        id=inv.gateway.id,
        embassy=g.ident("embassy"),
        host=g.text("host"),
        grpc_port=g.port("grpc_port"),
        bind=g.text("bind", DEFAULT_BIND),
    )
    witness = None
    if "witness" in doc:
        w = _Table(path, "witness", doc["witness"])
        witness = WitnessSite(
            authority=w.ident("authority"),
            embassy=w.ident("embassy"),
            host=w.text("host"),
            interval_s=w.number("interval_s", 10.0),
        )
    by_id = {t.data.get("id"): t for t in top.tables("offices")}
    offices = tuple(
        OfficeSite(
            id=o.id,
            host=by_id[o.id].text("host"),
            grpc_port=by_id[o.id].port("grpc_port"),
            nats_port=by_id[o.id].port("nats_port"),
            bind=by_id[o.id].text("bind", DEFAULT_BIND),
            suite=by_id[o.id].text("suite", "classic"),
            nats_bind=by_id[o.id].text("nats_bind", "127.0.0.1"),
            agency_systems=by_id[o.id].idents("agency_systems"),
        )
        for o in inv.offices
    )
    install = _install(_Table(path, "install", doc.get("install", {})))
    site = SiteInventory(inv, countries, embassies, hub, gateway, witness, offices, install)
    _cross_check(path, site)
    return site


def _cross_check(path: Path, site: SiteInventory) -> None:
    def fail(what: str) -> ConfigError:
        return ConfigError(f"inventory {path}: {what}")

    codes = {c.code for c in site.countries}
    embassies = {e.id for e in site.embassies}
    for e in site.embassies:
        if codes and e.country not in codes:
            raise fail(f"embassy {e.id}: country {e.country!r} is not in [[countries]]")
    for what, embassy in (("hub", site.hub.embassy), ("gateway", site.gateway.embassy)):
        if embassy not in embassies:
            raise fail(f"{what}: embassy {embassy!r} is not in [[embassies]]")
    if site.witness is not None:
        w = site.witness
        if w.authority not in {a.id for a in site.inventory.authorities}:
            raise fail(f"witness: {w.authority!r} is not an authority (only authorities co-sign)")
        if w.embassy not in embassies:
            raise fail(f"witness: embassy {w.embassy!r} is not in [[embassies]]")
        if w.embassy == site.gateway.embassy:
            raise fail("witness: must sit at another embassy than the gateway it watches")
    for suite in {o.suite for o in site.offices}:
        try:
            model.Suite.parse(suite)
        except ValueError as e:
            raise fail(f"offices: suite {suite!r}: {e}") from None
    names = [s.name for s in site.hub.servers] + [site.gateway.id] + [o.id for o in site.offices]
    if site.witness is not None:
        names.append(site.witness.name)
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise fail(f"node names must be unique; repeated: {', '.join(sorted(dup))}")
    seen: dict[tuple[str, int], str] = {}
    for what, host, port in site.listeners():
        if (host, port) in seen:
            raise fail(f"{what} and {seen[host, port]} both use {host}:{port}")
        seen[host, port] = what
