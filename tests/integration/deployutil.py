"""Helpers to render a deployment inventory onto this machine and run the rendered bundles.

Used by ``test_deploy.py`` (everything on loopback) and ``test_multihost.py``
(offices in their own network namespaces). What it does: writes an inventory
(the example one with hosts, binds, free ports and tmp install paths
replaced), renders it with bundled keys, starts every rendered nats-server
and node as a real process (optionally under ``ip netns exec``), waits for
each step with a bound, and writes a ``lab.json`` so the fault-test helpers
(``tests.faults.faultutil``) and ``Client.from_lab`` can drive the rendered
deployment as they drive a lab. What it does not: create network
namespaces (``test_multihost.py`` does) or reach into node internals.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import tomllib
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from exchange.client.sdk import Client, ClientTls
from keys.inventory import load_site_inventory
from liaison.bundles.render import KEYS_BUNDLED, render
from liaison.lab.lab import NodeProcess
from liaison.natsserver import find_nats_server_binary, free_port

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "inventory.example.toml"
PASSPHRASE = b"deploy-test-passphrase"  # the on-node tests' keys init (bundled renders generate their own)
CA_PASSPHRASE = b"deploy-test-ca-passphrase"  # the CA key's own: never the keystores' passphrase
START_S = 60.0
GATEWAY = "embassy-gateway"
WITNESS = "tj-embassy-moscow-witness"


# --- a tiny TOML writer (enough for inventories) ----------------------------------------------


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    raise TypeError(type(v))


def _toml(doc: dict[str, Any], prefix: str = "") -> str:
    scalars = {k: v for k, v in doc.items() if not _is_table(v)}
    out = "".join(f"{k} = {_value(v)}\n" for k, v in scalars.items())
    for k, v in doc.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out += f"\n[{name}]\n" + _toml(v, f"{name}.")
        elif _is_table(v):
            for item in v:
                out += f"\n[[{name}]]\n" + _toml(item, f"{name}.")
    return out


def _is_table(v: Any) -> bool:
    return isinstance(v, dict) or (isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v))


@dataclass(frozen=True)
class Hosts:
    """Where each node listens: hub servers (in order), the gateway, each office by id."""

    hubs: tuple[str, ...] = ("127.0.0.1", "127.0.0.1", "127.0.0.1")
    gateway: str = "127.0.0.1"
    offices: Mapping[str, str] = field(default_factory=dict)  # absent: 127.0.0.1

    def office(self, office: str) -> str:
        return self.offices.get(office, "127.0.0.1")


def local_inventory(tmp: Path, hosts: Hosts | None = None) -> Path:
    """The example inventory moved onto this machine: ``hosts`` (loopback), free ports, tmp paths."""
    hosts = hosts or Hosts()
    doc = tomllib.loads(EXAMPLE.read_text())
    for s, host in zip(doc["hub"]["servers"], hosts.hubs, strict=True):
        s.update(
            host=host,
            bind=host,
            client_port=free_port(),
            cluster_port=free_port(),
            leaf_port=free_port(),
            monitor_port=free_port(),
        )
    doc["gateway"].update(host=hosts.gateway, bind=hosts.gateway, grpc_port=free_port())
    doc["witness"].update(host=hosts.gateway, interval_s=0.5)
    for o in doc["offices"]:
        host = hosts.office(o["id"])
        o.update(host=host, bind=host, grpc_port=free_port(), nats_port=free_port())
    doc["install"] = {
        "config_dir": str(tmp / "bundles"),
        "state_dir": str(tmp / "state"),
        "credentials_dir": str(tmp / "credentials"),
        "passphrase_file": str(tmp / "credentials" / "{node}.passphrase"),
        "liaison": str(Path(sys.executable).parent / "liaison"),
        "nats_server": str(find_nats_server_binary()),
        "user": "liaison",
    }
    path = tmp / "inventory.toml"
    path.write_text(_toml(doc))
    return path


def render_local(tmp: Path, hosts: Hosts | None = None) -> Path:
    """The local deployment rendered with bundled keys: <tmp>/bundles/<node>.

    Each node's own keystore passphrase is installed as its README says, in
    <tmp>/credentials/<node>.passphrase where its config reads it; the bundle keeps its copy
    so that `deploy check <tmp>/bundles` opens each keystore with its own passphrase.
    """
    site = load_site_inventory(local_inventory(tmp, hosts))
    bundles = render(
        site, tmp / "bundles", keys=KEYS_BUNDLED, ca_passphrase=CA_PASSPHRASE, now_ms=int(time.time() * 1000)
    )
    (tmp / "credentials").mkdir(mode=0o700, exist_ok=True)
    for b in bundles:
        own = b.keys.get("passphrase")
        if own:
            shutil.copy2(tmp / "bundles" / b.node / own, tmp / "credentials" / f"{b.node}.passphrase")
    return tmp


# --- running the rendered bundles --------------------------------------------------------------


def wait_for(
    what: str, predicate: Callable[[], bool], timeout: float, on_fail: Callable[[], str] = str
) -> float:
    """Poll ``predicate`` until true; return how long it took, or fail after ``timeout`` seconds."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{on_fail()}")
        time.sleep(0.2)
    return time.monotonic() - start


def http_json(url: str) -> dict[str, Any]:
    """A monitoring endpoint's JSON, or {} when it does not answer."""
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            data: dict[str, Any] = json.loads(r.read())
            return data
    except OSError:
        return {}


def netns_prefix(netns: str) -> list[str]:
    return ["ip", "netns", "exec", netns] if netns else []


@dataclass
class NetnsNodeProcess(NodeProcess):
    """A node process, started inside network namespace ``netns`` when it is set."""

    netns: str = ""

    def start(self) -> None:
        self._log_file = self.log.open("ab")
        self.proc = subprocess.Popen(
            [
                *netns_prefix(self.netns),
                sys.executable,
                "-m",
                "liaison.cli",
                self.role,
                "serve",
                "--config",
                str(self.config),
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


class Procs:
    """Processes started by the test; all stopped (SIGTERM, then SIGKILL) at the end."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        logs.mkdir(exist_ok=True)
        self.nats: dict[str, tuple[subprocess.Popen[bytes], IO[bytes]]] = {}
        self.nats_cmd: dict[str, list[str]] = {}
        self.nodes: list[NodeProcess] = []

    def start_nats(self, name: str, conf: Path, netns: str = "") -> None:
        cmd = [*netns_prefix(netns), str(find_nats_server_binary()), "-c", str(conf)]
        self.nats_cmd[name] = cmd
        log = (self.logs / f"nats-{name}.log").open("ab")
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.nats[name] = (proc, log)

    def kill_nats(self, name: str) -> None:
        """SIGKILL one nats-server (its store stays; ``restart_nats`` starts it again)."""
        proc, log = self.nats.pop(name)
        proc.kill()
        proc.wait(timeout=10)
        log.close()

    def restart_nats(self, name: str) -> None:
        log = (self.logs / f"nats-{name}.log").open("ab")
        proc = subprocess.Popen(
            self.nats_cmd[name], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        self.nats[name] = (proc, log)

    def log_tail(self, name: str) -> str:
        return "\n".join((self.logs / f"nats-{name}.log").read_text(errors="replace").splitlines()[-15:])

    def stop(self) -> None:
        for node in reversed(self.nodes):
            node.stop()
        for proc, log in self.nats.values():
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
            log.close()
        self.nats.clear()


@dataclass
class Running:
    """A rendered deployment started by :func:`start_deployment`."""

    root: Path  # holds lab.json, so ``Client.from_lab(root, office)`` and faultutil work
    bundles: Path
    manifests: dict[str, Any]
    procs: Procs
    figures: dict[str, float]

    @property
    def hubs(self) -> list[str]:
        return sorted(n for n, m in self.manifests.items() if m["role"] == "hub")

    @property
    def offices(self) -> list[str]:
        return sorted(n for n, m in self.manifests.items() if m["role"] == "office")

    def address(self, node: str, index: int = 0) -> str:
        address: str = self.manifests[node]["listen"][index]["address"]
        return address

    def monitor(self, hub: str) -> str:
        return f"http://{self.address(hub, 3)}"

    def leaf_links(self) -> int:
        """Leaf connections the hub servers report (one per office when all links are up)."""
        return sum(int(http_json(f"{self.monitor(h)}/leafz").get("leafnodes", 0)) for h in self.hubs)

    def node(self, name: str) -> NodeProcess:
        return next(n for n in self.procs.nodes if n.name == name)

    @property
    def deployment(self) -> Running:
        return self  # faultutil.verify_audit_log reads ``lab.deployment.directory_file``

    @property
    def directory_file(self) -> Path:
        return self.bundles / GATEWAY / "directory.pb"

    @property
    def operator(self) -> ClientTls:
        op = self.bundles / "_private" / "operator"
        return ClientTls(op / "ca.crt", op / "operator.crt", op / "operator.key")


def agency_tls(running: Running, office: str) -> ClientTls:
    """The (first) agency system certificate of ``office``'s bundle: one per system when listed."""
    a = running.bundles / office / "agency"
    cert = min(c for c in a.glob("*.crt") if c.name != "ca.crt")
    return ClientTls(a / "ca.crt", cert, cert.with_suffix(".key"))


def client(running: Running, office: str) -> Client:
    """An agency client of ``office``, with the agency certificate from its bundle."""
    return Client(running.address(office), tls=agency_tls(running, office))


def _write_lab_json(running: Running) -> None:
    def tls(t: ClientTls) -> dict[str, str]:
        return {"ca": str(t.ca), "cert": str(t.cert), "key": str(t.key)}

    offices = []
    for office in running.offices:
        agency = agency_tls(running, office)
        offices.append({"id": office, "grpc": running.address(office), "client_tls": tls(agency)})
    doc = {
        "offices": offices,
        "gateway": {"grpc": running.address(GATEWAY)},
        "operator_tls": tls(running.operator),
    }
    (running.root / "lab.json").write_text(json.dumps(doc, indent=2))


def start_deployment(
    root: Path, procs: Procs, *, netns: Mapping[str, str] | None = None, witness: bool = True
) -> Running:
    """Start the rendered deployment in ``root/bundles``; ``netns`` maps a node to its namespace.

    Order: hub cluster (until a JetStream meta leader), every office leaf server (until
    the hub reports all leaf links), gateway, offices (until SERVING), witness. The
    caller stops ``procs`` (in a ``finally``).
    """
    netns = netns or {}
    bundles = root / "bundles"
    manifests = {
        p.name: json.loads((p / "bundle.json").read_text()) for p in bundles.iterdir() if p.name[0] != "_"
    }
    for m in manifests.values():  # README step 3: the writable state of each node
        Path(m["state_dir"]).mkdir(mode=0o700, parents=True, exist_ok=True)
    running = Running(root, bundles, manifests, procs, {})
    figures = running.figures
    t0 = time.monotonic()
    for name in running.hubs:
        procs.start_nats(name, bundles / name / "nats-server.conf", netns.get(name, ""))
    first = running.hubs[0]
    figures["hub_cluster_ready_s"] = wait_for(
        "the hub's JetStream meta leader",
        lambda: bool(http_json(f"{running.monitor(first)}/jsz").get("meta_cluster", {}).get("leader")),
        START_S,
        lambda: procs.log_tail(first),
    )
    for office in running.offices:
        procs.start_nats(office, bundles / office / "nats-server.conf", netns.get(office, ""))
    figures["leaf_links_up_s"] = wait_for(
        "every office leaf link at the hub",
        lambda: running.leaf_links() == len(running.offices),
        START_S,
        lambda: procs.log_tail(running.offices[0]),
    )
    gateway = NetnsNodeProcess(
        "gateway",
        "gateway",
        bundles / GATEWAY / "gateway.toml",
        running.address(GATEWAY),
        procs.logs / "gateway.log",
        running.operator,
        netns=netns.get(GATEWAY, ""),
    )
    procs.nodes.append(gateway)
    gateway.start()
    gateway.wait_serving(time.monotonic() + START_S)
    for office in running.offices:
        node = NetnsNodeProcess(
            office,
            "office",
            bundles / office / "office.toml",
            running.address(office),
            procs.logs / f"{office}.log",
            running.operator,
            netns=netns.get(office, ""),
        )
        procs.nodes.append(node)
        node.start()
    for node in procs.nodes[1:]:
        node.wait_serving(time.monotonic() + START_S)
    figures["all_nodes_serving_s"] = time.monotonic() - t0
    if witness:
        node = NetnsNodeProcess(
            "witness",
            "witness",
            bundles / WITNESS / "witness.toml",
            "",
            procs.logs / "witness.log",
            netns=netns.get(WITNESS, ""),
        )
        procs.nodes.append(node)
        node.start()
    _write_lab_json(running)
    return running
