"""The lab's cluster topology: a three-server JetStream hub and one leaf node server per office.

What it does: describes this machine as a site (loopback, ports picked here)
with :class:`keys.inventory.SiteInventory`, issues the hub, route and leaf
node certificates into the lab's PKI with the same code as ``liaison deploy
render`` (:func:`liaison.bundles.render.issue_nats_certificates`), renders every
nats-server config with :mod:`liaison.bundles.nats` (the real-site configs:
routes and leaf links with mutual TLS, JetStream domain ``hub``, office
permissions), runs the servers and waits, bounded, until the hub has a
JetStream meta leader and every office's leaf link is up. A port taken
between picking and binding (parallel labs) makes it pick new ports and try
again. The lab only appends two lines of its own to each rendered config:
the ports file folder (so it learns when a server listens) and, on leaf
servers, a monitoring listener on a port the server picks.

What it does not: start the gateway or the office nodes, or write their
configs (``liaison.lab.lab`` does, pointing the gateway at every hub server and
each office node at its own leaf server only).
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from exchange.core.errors import ConfigError
from keys.deployment import Inventory
from keys.deployment_pki import DeploymentPki
from keys.inventory import GatewaySite, Hub, HubServer, Install, OfficeSite, SiteInventory
from liaison.bundles.nats import TlsPaths, hub_config, leaf_config, route_user
from liaison.bundles.render import issue_nats_certificates
from liaison.natsserver import NatsServer, free_port

__all__ = ["CLUSTER", "HUB_DOMAIN", "HUB_SIZE", "ClusterNats", "RenderedNatsServer", "jsz"]

HUB_SIZE: Final = 3
HUB_DOMAIN: Final = "hub"
CLUSTER: Final = "liaison-hub"
HOST: Final = "127.0.0.1"
PORT_ATTEMPTS: Final = 3
_HOSTS: Final = (HOST, "localhost")
_IN_USE: Final = "address already in use"


class RenderedNatsServer(NatsServer):
    """A :class:`NatsServer` that starts from a config rendered by :mod:`liaison.bundles.nats`."""

    def __init__(
        self, store_dir: Path, text: str, *, name: str, port: int, http_port: int, monitor_any: bool = False
    ) -> None:
        super().__init__(store_dir, port=port, http_port=http_port, server_name=name)
        self.text = text
        self.monitor_any = monitor_any  # add monitoring on a port the server picks (leaf servers)

    @property
    def tls_url(self) -> str:
        return f"tls://{self.host}:{self.port}"

    def render_config(self) -> str:
        extra = [f"ports_file_dir: {json.dumps(str(self.store_dir))}"]
        if self.monitor_any:
            extra.append(f"http: {json.dumps(f'{HOST}:-1')}")
        return self.text + "\n".join(extra) + "\n"

    def monitor(self, endpoint: str) -> dict[str, Any]:
        """A monitoring endpoint's JSON (``jsz``, ``leafz``, ``connz`` …); {} when it does not answer."""
        if not self.running or self.http_url is None:
            return {}
        try:
            with urllib.request.urlopen(f"{self.http_url}/{endpoint}", timeout=2) as reply:  # noqa: S310
                data: dict[str, Any] = json.loads(reply.read())
                return data
        except (OSError, ValueError):
            return {}


def jsz(server: RenderedNatsServer) -> dict[str, Any]:
    """The server's JetStream report with every stream's config and cluster placement."""
    return server.monitor("jsz?accounts=true&streams=true&config=true")


def _pick_ports(offices: list[str]) -> dict[str, Any]:
    hub = [
        {"client": free_port(), "cluster": free_port(), "leaf": free_port(), "monitor": free_port()}
        for _ in range(HUB_SIZE)
    ]
    return {"hub": hub, "leafs": {o: free_port() for o in offices}}


@dataclass
class ClusterNats:
    """Every nats-server of the cluster topology; ``hubs`` and ``leafs`` can be killed and restarted."""

    root: Path  # <lab>/nats-cluster: ports.json, one folder per server
    inventory: Inventory
    pki: DeploymentPki

    def __post_init__(self) -> None:
        self.hubs: list[RenderedNatsServer] = []
        self.leafs: dict[str, RenderedNatsServer] = {}
        self.site = self._site(self._ports())
        if not self.pki.files(self.site.hub.servers[0].name).cert.exists():
            issue_nats_certificates(self.pki.root, self.site, lambda _host: _HOSTS, self.pki.ca_passphrase)
        self._render()

    # --- ports and configs ----------------------------------------------------------

    def _ports(self, *, fresh: bool = False) -> dict[str, Any]:
        # Kept across restarts of the same lab so JetStream state, routes and node configs line up.
        path = self.root / "ports.json"
        if path.exists() and not fresh:
            ports: dict[str, Any] = json.loads(path.read_text())
            return ports
        self.root.mkdir(parents=True, exist_ok=True)
        ports = _pick_ports([o.id for o in self.inventory.offices])
        path.write_text(json.dumps(ports, indent=2) + "\n")
        return ports

    def _site(self, ports: dict[str, Any]) -> SiteInventory:
        inv = self.inventory
        servers = tuple(
            HubServer(f"hub-{i + 1}", HOST, p["client"], p["cluster"], p["leaf"], p["monitor"], bind=HOST)
            for i, p in enumerate(ports["hub"])
        )
        offices = tuple(
            OfficeSite(o.id, HOST, grpc_port=0, nats_port=ports["leafs"][o.id], bind=HOST, nats_bind=HOST)
            for o in inv.offices
        )
        return SiteInventory(
            inventory=inv,
            countries=(),
            embassies=(),
            hub=Hub(CLUSTER, HUB_DOMAIN, "lab", servers),
            gateway=GatewaySite(inv.gateway.id, "lab", HOST, 0, bind=HOST),
            witness=None,
            offices=offices,
            install=Install(),
        )

    def _render(self) -> None:
        site, pki = self.site, self.pki
        ca = pki.ca
        self.hubs = []
        for s in site.hub.servers:
            text = hub_config(
                site,
                s,
                client_tls=TlsPaths(ca, pki.files(s.name).cert, pki.files(s.name).key),
                route_tls=TlsPaths(ca, pki.root / f"{s.name}.route.crt", pki.root / f"{s.name}.route.key"),
                store=self.root / s.name / "data",
                gateway_dn=pki.dn(self.inventory.gateway.id),
                leaf_dns={o.id: pki.dn(o.nats_name) for o in site.offices},
            )
            self.hubs.append(
                RenderedNatsServer(
                    self.root / s.name, text, name=s.name, port=s.client_port, http_port=s.monitor_port
                )
            )
        self.leafs = {}
        for o in site.offices:
            files = pki.files(o.nats_name)
            text = leaf_config(
                site,
                o,
                tls=TlsPaths(ca, files.cert, files.key),
                store=self.root / o.nats_name / "data",
                office_dn=pki.dn(o.id),
            )
            self.leafs[o.id] = RenderedNatsServer(
                self.root / o.nats_name,
                text,
                name=o.nats_name,
                port=o.nats_port,
                http_port=0,
                monitor_any=True,
            )

    # --- running ----------------------------------------------------------------------

    @property
    def servers(self) -> list[RenderedNatsServer]:
        return [*self.hubs, *self.leafs.values()]

    @property
    def hub_urls(self) -> list[str]:
        return [h.tls_url for h in self.hubs]

    def leaf_url(self, office: str) -> str:
        return self.leafs[office].tls_url

    def start(self, deadline: float) -> bool:
        """Start every server not running; True if ports had to be picked anew (configs changed)."""
        repicked = False
        for attempt in range(PORT_ATTEMPTS):
            try:
                self._start_all(deadline)
                return repicked
            except ConfigError as e:
                self.stop()
                if _IN_USE not in str(e) or attempt == PORT_ATTEMPTS - 1:
                    raise
            self.site = self._site(self._ports(fresh=True))
            self._render()
            repicked = True
        raise AssertionError("unreachable")

    def _start_all(self, deadline: float) -> None:
        for hub in self.hubs:
            hub.start()
        self._wait("the hub's JetStream meta leader", lambda: bool(self.meta_leader()), deadline, self.hubs)
        for leaf in self.leafs.values():
            leaf.start()
        self._wait("every office's leaf link at the hub", self.all_leaf_links_up, deadline, self.servers)

    def _wait(
        self, what: str, done: Callable[[], bool], deadline: float, watch: list[RenderedNatsServer]
    ) -> None:
        while not done():
            for server in watch:
                if not server.running:  # exited (a port taken meanwhile?): say why
                    raise ConfigError(f"{server.server_name} exited:\n{server.log_tail()}")
            if time.monotonic() > deadline:
                raise ConfigError(f"timed out waiting for {what}:\n{self.hubs[0].log_tail(1500)}")
            time.sleep(0.1)

    def meta_leader(self) -> str:
        """The JetStream meta leader's server name as the running hub servers see it ('' if none)."""
        for hub in self.hubs:
            leader = hub.monitor("jsz").get("meta_cluster", {}).get("leader")
            if leader:
                return str(leader)
        return ""

    def leaf_links(self) -> int:
        """How many office leaf links the running hub servers hold."""
        return sum(int(h.monitor("leafz").get("leafnodes", 0)) for h in self.hubs)

    def all_leaf_links_up(self) -> bool:
        return self.leaf_links() == len(self.leafs)

    def stop(self) -> None:
        for server in [*self.leafs.values(), *self.hubs]:
            server.stop()

    def describe(self) -> dict[str, Any]:
        return {
            "cluster": CLUSTER,
            "domain": HUB_DOMAIN,
            "route_user": route_user(CLUSTER),
            "hub": [
                {"name": h.server_name, "url": h.tls_url, "pid": h.pid, "monitor": h.http_url}
                for h in self.hubs
            ],
            "leafs": {
                office: {
                    "name": leaf.server_name,
                    "url": leaf.tls_url,
                    "pid": leaf.pid,
                    "monitor": leaf.http_url,
                }
                for office, leaf in self.leafs.items()
            },
        }
