"""A complete local deployment on one machine: NATS, the gateway, every office.

Builds the deployment from an inventory (keys, signed directory, node
configs), starts NATS and one process per node, waits until each reports
SERVING on gRPC health, writes ``lab.json`` for clients, and stops
everything on request leaving no process behind.

Two NATS topologies: ``single`` (one embedded ``nats-server`` with TLS, the
streams in their own account and one account per office, ADR 0011) and
``cluster`` (the real-site topology from ``liaison.lab.cluster``: a
three-server JetStream hub with R3 streams, one leaf node server per office;
each office node talks only to its own leaf server, the gateway to every hub
server).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import IO, Any

import grpc
from grpc_health.v1 import health_pb2_grpc

from exchange.client.connection import LAB_JSON, ClientTls, channel
from exchange.core.clock import now_ms
from exchange.core.codec.health import health_check_request, is_serving
from exchange.core.errors import ConfigError
from exchange.core.wire import OFFICE_JS_DOMAIN, inbox_prefix
from exchange.nats.permissions import render_tls_accounts
from exchange.runtime.config import NatsConfig, load_toml, metrics_section
from exchange.runtime.lifecycle import nats_tls
from keys.deployment import Deployment, Inventory, create_deployment, load_inventory
from keys.deployment_pki import LAB_AGENCY, NATS_SERVER, OPERATOR, DeploymentPki, create_deployment_pki
from keys.keystore import write_private_file
from liaison.lab.cluster import HUB_SIZE, ClusterNats, RenderedNatsServer
from liaison.natsserver import NatsServer, free_port

__all__ = ["DEFAULT_INVENTORY", "TOPOLOGIES", "Lab", "NodeProcess"]

DEFAULT_INVENTORY = Path(str(resources.files("liaison") / "data" / "lab.toml"))
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
TOPOLOGIES = ("single", "cluster")


@dataclass
class NodeProcess:
    name: str  # "gateway" or an office id
    role: str  # "gateway" | "office"
    config: Path
    grpc: str
    log: Path
    health_tls: ClientTls | None = None  # a certificate the node accepts, for health checks
    proc: subprocess.Popen[bytes] | None = None
    _log_file: IO[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        self._log_file = self.log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "liaison.cli", self.role, "serve", "--config", str(self.config)],
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.running and self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, sig)

    def stop(self, *, kill: bool = False, timeout: float = STOP_TIMEOUT_S) -> None:
        if self.proc is None:
            return
        self.signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.proc.wait(timeout=timeout)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        self.proc = None

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def wait_serving(self, deadline: float) -> None:
        with channel(self.grpc, self.health_tls) as ch:
            stub = health_pb2_grpc.HealthStub(ch)
            while True:
                if not self.running:
                    raise ConfigError(f"{self.name} exited during start-up:\n{self.log_tail()}")
                try:
                    if is_serving(stub.Check(health_check_request(""), timeout=1.0)):
                        return
                except grpc.RpcError:
                    pass
                if time.monotonic() > deadline:
                    raise ConfigError(f"{self.name} did not become healthy in time:\n{self.log_tail()}")
                time.sleep(0.2)


class Lab:
    """The lab in folder ``root``; ``start``/``stop`` are idempotent and bounded in time."""

    def __init__(
        self,
        root: Path,
        *,
        inventory: Path = DEFAULT_INVENTORY,
        suite: str = "classic",
        topology: str = "single",
    ) -> None:
        if topology not in TOPOLOGIES:
            raise ConfigError(f"lab topology must be one of {', '.join(TOPOLOGIES)}, not {topology!r}")
        self.root = root.resolve()
        self.inventory = inventory
        self.suite = suite
        self.topology = topology
        self.deployment: Deployment | None = None
        self.nats: NatsServer | None = None  # topology single
        self.cluster: ClusterNats | None = None  # topology cluster
        self.nodes: dict[str, NodeProcess] = {}
        self.pki = DeploymentPki(self.root / "pki")

    # --- set-up --------------------------------------------------------------------

    def prepare(self) -> Deployment:
        """Keys and signed directory (kept if the folder has them), fresh configs and ports."""
        inv = load_inventory(self.inventory)
        if (self.root / "directory.pb").exists():
            deployment = Deployment(self.root, inv, self.root / "directory.pb", self.root / "passphrase")
        else:
            # The lab's keys are throwaway and one process holds them all: ONE passphrase for
            # every keystore is fine here. `deploy render` gives each owner its own (ADR 0014).
            deployment = create_deployment(inv, self.root, os.urandom(24).hex().encode(), now_ms())
        self.deployment = deployment
        self.pki = create_deployment_pki(inv, self.root / "pki", self._ca_passphrase())
        (self.root / "logs").mkdir(exist_ok=True)
        if self.topology == "cluster":
            self.cluster = ClusterNats(self.root / "nats-cluster", inv, self.pki)
        else:
            self.nats = self._single_nats(inv)
        self._make_nodes()
        return deployment

    def _ca_passphrase(self) -> bytes:
        """The lab CA's own random passphrase (``ca.passphrase``, 0600): one machine, one operator."""
        path = self.root / "ca.passphrase"
        if not path.exists():
            write_private_file(path, os.urandom(24).hex().encode())
        return path.read_bytes()

    def _make_nodes(self) -> None:
        assert self.deployment is not None
        inv = self.deployment.inventory
        self.nodes = {"gateway": self._node("gateway", "gateway", inv.gateway.id)}
        for office in inv.offices:
            self.nodes[office.id] = self._node(office.id, "office", office.id)

    def _single_nats(self, inv: Inventory) -> NatsServer:
        server = self.pki.files(NATS_SERVER)
        return NatsServer(
            self.root / "nats",
            port=self._nats_port(),
            auth_config=render_tls_accounts(
                ca=server.ca,
                cert=server.cert,
                key=server.key,
                gateway_dn=self.pki.dn(inv.gateway.id),
                office_dns={o.id: self.pki.dn(o.id) for o in inv.offices},
            ),
        )

    @property
    def nats_url(self) -> str:
        """The NATS server(s) the gateway uses: one URL, or every hub server's, comma-separated."""
        if self.cluster is not None:
            return ",".join(self.cluster.hub_urls)
        assert self.nats is not None
        return f"tls://127.0.0.1:{self.nats.port}"

    def nats_servers(self, owner: str) -> list[str]:
        """The NATS URLs ``owner`` may connect to: an office its own leaf server in a cluster lab."""
        if self.cluster is None:
            return [self.nats_url]
        if self._is_gateway(owner):
            return self.cluster.hub_urls
        return [self.cluster.leaf_url(owner)]

    @property
    def hub_servers(self) -> list[RenderedNatsServer]:
        """The hub's three nats-servers (cluster topology), for fault tests: ``kill()``/``start()``."""
        return list(self.cluster.hubs) if self.cluster is not None else []

    @property
    def leafs(self) -> dict[str, RenderedNatsServer]:
        """Each office's leaf node nats-server (cluster topology)."""
        return dict(self.cluster.leafs) if self.cluster is not None else {}

    def _is_gateway(self, owner: str) -> bool:
        return self.deployment is not None and owner == self.deployment.inventory.gateway.id

    def nats_connect_args(self, owner: str) -> dict[str, Any]:
        """``exchange.nats.transport.connect`` keyword arguments for ``owner``'s NATS identity."""
        files = self.pki.files(owner)
        context = nats_tls(NatsConfig(url="", ca=files.ca, cert=files.cert, key=files.key))
        gateway = self._is_gateway(owner)
        args: dict[str, Any] = {"tls": context, "inbox_prefix": None if gateway else inbox_prefix(owner)}
        if not gateway:  # offices address the streams' JetStream by its domain (ADR 0011)
            args["domain"] = OFFICE_JS_DOMAIN
        return args

    def client_tls(self, name: str) -> ClientTls:
        files = self.pki.files(name)
        return ClientTls(files.ca, files.cert, files.key)

    def _nats_port(self) -> int:
        # Keep the port across restarts of the same lab so JetStream state and clients line up.
        previous = self.root / "nats" / "port"
        if previous.exists():
            return int(previous.read_text())
        previous.parent.mkdir(parents=True, exist_ok=True)
        port = free_port()
        previous.write_text(str(port))
        return port

    def _node(self, name: str, role: str, owner: str) -> NodeProcess:
        assert self.deployment is not None
        d = self.deployment
        node_dir = self.root / "nodes" / name
        node_dir.mkdir(parents=True, exist_ok=True)
        listen = f"127.0.0.1:{free_port()}"
        section = (
            f'[gateway]\nid = "{owner}"\n\n[audit]\nstore = "audit.db"\ntree_head_interval_s = 1.0\n'
            if role == "gateway"
            else f'[office]\nid = "{owner}"\nstore = "office.db"\nsuite = "{self.suite}"\n'
        )
        tls = self.pki.files(owner)
        clients = f'clients = ["{owner}-agency", "{LAB_AGENCY}"]\n' if role == "office" else ""
        prefix = f'inbox_prefix = "{inbox_prefix(owner)}"\n' if role == "office" else ""
        url = self.nats_url if self.cluster is None else ",".join(self.nats_servers(owner))
        if role == "office":  # offices address the streams' JetStream by its domain (ADR 0011)
            prefix += f'domain = "{OFFICE_JS_DOMAIN}"\n'
        elif self.cluster is not None:
            prefix += f"replicas = {HUB_SIZE}\n"
        files = f'ca = "{tls.ca}"\ncert = "{tls.cert}"\nkey = "{tls.key}"\n'
        config = node_dir / "config.toml"
        config.write_text(
            f"{section}\n"
            f'[keys]\ndir = "{d.keys_dir(owner)}"\npassphrase_file = "{d.passphrase_file}"\n\n'
            f'[directory]\nfile = "{d.directory_file}"\n\n'
            f'[nats]\nurl = "{url}"\n{files}{prefix}\n'
            f'[grpc]\nlisten = "{listen}"\n\n'
            f"[tls]\n{files}{clients}\n"
            f'[metrics]\nlisten = "127.0.0.1:{free_port()}"\n'
        )
        return NodeProcess(
            name, role, config, listen, self.root / "logs" / f"{name}.log", self.client_tls(OPERATOR)
        )

    # --- running -------------------------------------------------------------------

    def start(self, timeout: float = START_TIMEOUT_S) -> None:
        if self.deployment is None:
            self.prepare()
        deadline = time.monotonic() + timeout
        if self.cluster is not None:
            if self.cluster.start(deadline):  # ports picked anew: node configs must follow
                self._make_nodes()
        else:
            assert self.nats is not None
            if not self.nats.running:
                self.nats.start()
        for node in self.nodes.values():
            if not node.running:
                node.start()
        try:
            for name in list(self.nodes):
                self._wait_or_rebind(name, deadline)
        except BaseException:
            self.stop()
            raise
        self.write_lab_json()

    def _wait_or_rebind(self, name: str, deadline: float, attempts: int = 3) -> None:
        """Wait for a node; if a port picked for it was taken meanwhile (parallel labs), pick new ones."""
        for attempt in range(attempts):
            try:
                self.nodes[name].wait_serving(deadline)
                return
            except ConfigError as e:
                if "address already in use" not in str(e) or attempt == attempts - 1:
                    raise
            node = self.nodes[name]
            node.stop()
            self.nodes[name] = self._node(name, node.role, self._owner(name))
            self.nodes[name].start()

    def _owner(self, name: str) -> str:
        assert self.deployment is not None
        return self.deployment.inventory.gateway.id if name == "gateway" else name

    def start_node(self, name: str, timeout: float = START_TIMEOUT_S) -> None:
        node = self.nodes[name]
        node.start()
        node.wait_serving(time.monotonic() + timeout)

    def stop(self) -> None:
        for node in reversed(list(self.nodes.values())):
            node.signal(signal.SIGTERM)
        for node in self.nodes.values():
            node.stop()
        if self.nats is not None and self.nats.running:
            self.nats.stop()
        if self.cluster is not None:
            self.cluster.stop()

    def __enter__(self) -> Lab:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- description ---------------------------------------------------------------

    @property
    def gateway(self) -> NodeProcess:
        return self.nodes["gateway"]

    def describe(self) -> dict[str, Any]:
        assert self.deployment is not None
        inv = self.deployment.inventory

        def metrics(node: NodeProcess) -> str | None:
            """The node's /metrics URL from its config's [metrics] section (None when off)."""
            try:
                cfg = metrics_section(node.config, load_toml(node.config))
            except ConfigError:
                return None
            return f"http://{cfg.listen}/metrics" if cfg else None

        doc: dict[str, Any] = {
            "root": str(self.root),
            "deployment": inv.deployment,
            "topology": self.topology,
            "nats_url": self.nats_url,
            "directory": str(self.deployment.directory_file),
            "nats_pid": self.nats.pid if self.nats is not None else None,
            "gateway": {
                "id": inv.gateway.id,
                "grpc": self.gateway.grpc,
                "config": str(self.gateway.config),
                "pid": self.gateway.pid,
                "metrics": metrics(self.gateway),
            },
            "offices": [
                {
                    "id": o.id,
                    "display_name": o.name,
                    "grpc": self.nodes[o.id].grpc,
                    "config": str(self.nodes[o.id].config),
                    "pid": self.nodes[o.id].pid,
                    "metrics": metrics(self.nodes[o.id]),
                    "nats": {
                        "url": ",".join(self.nats_servers(o.id)),
                        **self.pki.files(o.id).as_json(),
                        "inbox_prefix": inbox_prefix(o.id),
                    },
                    "client_tls": self.pki.agency(o.id).as_json(),
                }
                for o in inv.offices
            ],
            "client_tls": self.pki.files(LAB_AGENCY).as_json(),
            "operator_tls": self.pki.files(OPERATOR).as_json(),
        }
        if self.cluster is not None:
            doc["nats_cluster"] = self.cluster.describe()
        return doc

    def write_lab_json(self) -> Path:
        path = self.root / LAB_JSON
        path.write_text(json.dumps(self.describe(), indent=2) + "\n")
        return path
