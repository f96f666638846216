"""The rendered deployment across network namespaces: an office's link cut and restored, a hub server killed.

Needs root and ``ip netns`` (iproute2); skipped otherwise. Each office site
gets its own network namespace holding its leaf nats-server and its office
node, with two veth links into the root namespace: a WAN link on a bridge
shared with the hub (the three hub servers and the gateway run in the root
namespace, each hub server on its own address of that bridge) and a LAN link
on a second bridge, the agency side, where the test's agency clients reach
the office's gRPC port. So leaf-to-hub traffic really crosses interfaces,
and cutting an office's WAN link (its bridge port set down: a pulled cable,
no reset) leaves its agency systems connected to it.

Names carry the pytest process id (``lmh-<pid>-<n>-<i>`` namespaces,
``lmb<pid><n>w|l`` bridges, ``lmv<pid><n>w|l<i>`` veths) and the subnet
10.x.y.0/24 is derived from it, so parallel workers do not collide; all are
removed after each test, failed or not, and leftovers of crashed runs whose
process is gone are removed first.

Counters as in the fault tests (``tests.faults.faultutil``): every Send that
returned an id has its sender's ACCEPTED receipt, reached each recipient's
agency system exactly once and is in the audit log exactly once as
ACCEPTED; the log verifies against the head signed before the fault.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from typing import Any, Final

import pytest

from gateway.client import AuditClient
from tests.faults.faultutil import (
    Inboxes,
    Plan,
    Traffic,
    count_counters,
    verify_audit_log,
    wait_delivered,
)
from tests.integration.deployutil import (
    Hosts,
    Procs,
    Running,
    http_json,
    render_local,
    start_deployment,
    wait_for,
)

RU, TJ, MIG = "ru-mvd-dushanbe", "tj-mvd-moscow", "tj-migration-moscow"
OFFICES: Final = [MIG, RU, TJ]  # sorted, as the deployment lists them
CUT_S: Final = 15.0  # how long the office's WAN link stays down
DRAIN_S: Final = 120.0  # bound on delivering everything after the link is back
IP_TIMEOUT_S: Final = 10.0
NS_PREFIX: Final = "lmh-"
_RUN = count()
_OWN = re.compile(r"^(?:lmh-(\d+)-|lm[bv](\d+)[a-z])")


def _ip(*args: str, check: bool = True) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=IP_TIMEOUT_S, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def _netns_usable() -> str:
    """Why the test cannot run here, or "" when it can."""
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    if shutil.which("ip") is None:
        return "needs iproute2 (`ip`)"
    probe = f"{NS_PREFIX}{os.getpid()}-probe"
    try:
        _ip("netns", "add", probe)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
        return f"`ip netns add` does not work here: {e}"
    _ip("netns", "del", probe, check=False)
    return ""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_netns_processes(ns: str) -> None:
    for pid in _ip("netns", "pids", ns, check=False).split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), 9)


def remove_stale() -> list[str]:
    """Remove namespaces, bridges and veths of our prefix left by runs whose process is gone."""
    removed = []
    for line in _ip("netns", "list", check=False).splitlines():
        name = line.split()[0] if line.split() else ""
        m = _OWN.match(name)
        if m and not _alive(int(m.group(1))):
            _kill_netns_processes(name)
            _ip("netns", "del", name, check=False)
            removed.append(name)
    for line in _ip("-o", "link", "show", check=False).splitlines():
        parts = line.split(":", 2)
        name = parts[1].strip().split("@")[0] if len(parts) > 1 else ""
        m = _OWN.match(name)
        if m and m.group(2) and not _alive(int(m.group(2))):
            _ip("link", "del", name, check=False)
            removed.append(name)
    return removed


@dataclass
class Network:
    """One namespace per office, a WAN bridge (hub side) and a LAN bridge (agency side)."""

    offices: list[str]
    tag: str = ""
    net: ipaddress.IPv4Network = field(default_factory=lambda: ipaddress.IPv4Network("10.0.0.0/24"))
    namespaces: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        pid = os.getpid()
        self.tag = f"{pid}{'abcdefghijklmnopqrstuvwxyz'[next(_RUN) % 26]}"
        self.net = ipaddress.IPv4Network(f"10.{64 + (pid >> 8) % 128}.{pid % 256}.0/24")
        in_use = _ip("-o", "-4", "addr", "show", check=False)
        for word in in_use.split():
            if "/" in word and ipaddress.ip_interface(word).ip in self.net:
                raise RuntimeError(f"subnet {self.net} is already in use here ({word})")

    def addr(self, host: int) -> str:
        return str(self.net.network_address + host)

    # WAN: .1 .2 .3 hub servers (.1 also the gateway), .11+i office i; LAN: .129 bridge, .139+i office i.
    @property
    def hubs(self) -> tuple[str, ...]:
        return (self.addr(1), self.addr(2), self.addr(3))

    def wan(self, i: int) -> str:
        return self.addr(11 + i)

    def lan(self, i: int) -> str:
        return self.addr(139 + i)

    def bridge(self, side: str) -> str:
        return f"lmb{self.tag}{side}"

    def veth(self, side: str, i: int) -> str:
        return f"lmv{self.tag}{side}{i}"

    def create(self) -> None:
        for side, addrs in (("w", self.hubs), ("l", (self.addr(129),))):
            br = self.bridge(side)
            _ip("link", "add", br, "type", "bridge")
            for a in addrs:
                _ip("addr", "add", f"{a}/25", "dev", br)
            _ip("link", "set", br, "up")
        for i, office in enumerate(self.offices):
            ns = f"{NS_PREFIX}{self.tag[:-1]}-{self.tag[-1]}-{i}"
            _ip("netns", "add", ns)
            self.namespaces[office] = ns
            _ip("-n", ns, "link", "set", "lo", "up")
            for side, inner, a in (("w", "wan", self.wan(i)), ("l", "lan", self.lan(i))):
                _ip("link", "add", self.veth(side, i), "type", "veth", "peer", "name", inner, "netns", ns)
                _ip("link", "set", self.veth(side, i), "master", self.bridge(side), "up")
                _ip("-n", ns, "addr", "add", f"{a}/25", "dev", inner)
                _ip("-n", ns, "link", "set", inner, "up")

    def cut(self, office: str) -> None:
        """Pull the office's WAN cable: its bridge port goes down, packets are dropped, nothing reset."""
        _ip("link", "set", self.veth("w", self.offices.index(office)), "down")

    def restore(self, office: str) -> None:
        _ip("link", "set", self.veth("w", self.offices.index(office)), "up")

    def remove(self) -> None:
        for i, ns in enumerate(self.namespaces.values()):
            _kill_netns_processes(ns)
            # A namespace outlives `ip netns del` while sockets in it linger (a cut link leaves
            # unacknowledged data behind), and its veths with it: delete them explicitly.
            for side in ("w", "l"):
                _ip("link", "del", self.veth(side, i), check=False)
            _ip("netns", "del", ns, check=False)
        for side in ("w", "l"):
            _ip("link", "del", self.bridge(side), check=False)


@dataclass
class Site:
    running: Running
    network: Network
    mode: str  # "stall" (rendered configs as they are) or "disconnect" (1 s NATS pings)

    @property
    def lab(self) -> Any:
        return self.running  # has what faultutil reads from a Lab: root (lab.json), deployment


FAST_PINGS: Final = 'ping_interval: "1s"\nping_max: 2\n'


def _fast_pings(bundles: Path) -> None:
    """Every nats-server pings its peers each second and drops a link after 2 missed pongs."""
    for conf in bundles.glob("*/nats-server.conf"):
        conf.write_text(conf.read_text() + FAST_PINGS)


@pytest.fixture
def site(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Site]:
    """The running multi-host deployment (``request.param``: "stall", the default, or "disconnect")."""
    mode = str(getattr(request, "param", "stall"))
    reason = _netns_usable()
    if reason:
        pytest.skip(reason)
    stale = remove_stale()
    if stale:
        print(f"removed leftovers of crashed runs: {stale}")
    network = Network(OFFICES)
    procs = Procs(tmp_path / "logs")
    try:
        network.create()
        hosts = Hosts(
            hubs=network.hubs,
            gateway=network.hubs[0],
            offices={o: network.lan(i) for i, o in enumerate(OFFICES)},
        )
        root = render_local(tmp_path, hosts)
        if mode == "disconnect":
            _fast_pings(root / "bundles")
        running = start_deployment(root, procs, netns=network.namespaces)
        print(f"[multihost] net {network.net}, namespaces {network.namespaces}, start {running.figures}")
        yield Site(running, network, mode)
    finally:
        procs.stop()
        network.remove()
    leftovers = [
        n for n in _ip("netns", "list", check=False).split() if n.startswith(f"{NS_PREFIX}{os.getpid()}-")
    ]
    leftovers += [n for n in _ip("-o", "link", "show", check=False).split() if network.tag in n]
    assert not leftovers, f"left behind: {leftovers}"


def _merge(*bursts: Traffic) -> Traffic:
    total = Traffic(bursts[0].lab, [], tag="all")
    for burst in bursts:
        total.absorb(burst)
    return total


@pytest.mark.slow
@pytest.mark.parametrize("site", ["stall", "disconnect"], indirect=True)
def test_office_link_cut_and_restored_loses_and_duplicates_nothing(site: Site) -> None:
    """Cut ru-mvd-dushanbe's WAN link for 15 s under traffic from, to and around it.

    ``stall``: the rendered configs as they are (NATS pings every 2 min): the leaf link
    stalls, TCP holds the data and resends it after restore. ``disconnect``: 1 s pings,
    so both ends drop the leaf link during the cut and the leaf server reconnects after
    restore; the office node's publishes meanwhile fail and are retried from its store.

    While cut: Sends from the office are accepted at once (stored in its out-queue),
    none of them reaches anyone, nothing sent to it arrives (held at the hub), and the
    other two offices keep exchanging. After restore everything drains: counters equal.
    """
    lab, running, name = site.lab, site.running, f"office link cut ({site.mode})"
    with AuditClient.from_lab(running.root) as audit:
        before = audit.tree_head()
    started = time.monotonic()
    with Inboxes(lab, OFFICES) as inboxes:
        warm = Traffic(lab, [Plan(RU, 9, ((TJ,), (TJ, MIG))), Plan(TJ, 9, ((RU,), (RU, MIG)))], tag="pre")
        warm.start().join()
        warm_s = wait_delivered(inboxes, warm)
        site.network.cut(RU)
        cut_at = time.monotonic()
        pace = 0.4
        during = Traffic(
            lab,
            [
                Plan(RU, 20, ((TJ,), (TJ, MIG)), pace_s=pace),  # from the cut office
                Plan(TJ, 20, ((RU,), (RU, MIG)), pace_s=pace),  # to it
                Plan(MIG, 15, ((TJ,),), alerts=False, pace_s=pace),  # around it
            ],
            tag="cut",
        ).start()
        during.join(timeout=CUT_S + 30.0)
        sends_done_s = time.monotonic() - cut_at
        # The rest of the exchange keeps working while one office is cut off.
        bystanders = {m: rs for m, rs in during.sent.items() if m in during.by_sender[MIG]}
        wait_for(
            "MIG->TJ delivered while cut", lambda: inboxes.has_all(bystanders), max(1.0, CUT_S - sends_done_s)
        )
        time.sleep(max(0.0, CUT_S - (time.monotonic() - cut_at)))
        links_while_cut = running.leaf_links()
        if site.mode == "disconnect":
            assert links_while_cut == len(OFFICES) - 1, "the hub did not drop the cut office's leaf link"
        got = inboxes.snapshot()
        to_ru = [m for m, rs in during.sent.items() if RU in rs]
        from_ru = set(during.by_sender[RU])
        site.network.restore(RU)
        cut_s = time.monotonic() - cut_at
        assert during.retries == 0, "a Send failed while the office's link was down"
        assert not set(got[RU]) & set(to_ru), "the cut office received mail sent while it was cut off"
        assert not any(from_ru & set(ids) for ids in got.values()), "mail from the cut office got out"
        restored_at = time.monotonic()
        drain_s = wait_delivered(inboxes, during, timeout=DRAIN_S)
        wait_for("the leaf link back", lambda: running.leaf_links() == len(OFFICES), 60.0)
        links_up_s = time.monotonic() - restored_at
        after = Traffic(lab, [Plan(RU, 6, ((TJ,),)), Plan(TJ, 6, ((RU,),))], tag="post").start()
        after.join()
        wait_delivered(inboxes, after)
        total = _merge(warm, during, after)
        counters = count_counters(lab, name, total, inboxes)
    verify_audit_log(lab, [before])
    print(
        f"[{name}] warm delivery {warm_s:.1f}s; link down {cut_s:.1f}s with {len(during.sent)} sent "
        f"({len(from_ru)} from the cut office, {len(to_ru)} to it), sends took {sends_done_s:.1f}s, "
        f"hub leaf links while cut {links_while_cut}/{len(OFFICES)}; all delivered "
        f"{drain_s:.1f}s after restore (all leaf links seen up {links_up_s:.1f}s after it); "
        f"counters {counters}; total {time.monotonic() - started:.1f}s"
    )


def _stream_leader(running: Running, stream: str) -> str:
    jsz = http_json(f"{running.monitor(running.hubs[0])}/jsz?streams=true")
    for account in jsz.get("account_details", []):
        for detail in account.get("stream_detail", []):
            if detail.get("name") == stream:
                return str(detail["cluster"]["leader"])
    raise AssertionError(f"no leader for {stream} in the hub's /jsz")


@pytest.mark.slow
def test_hub_server_killed_under_traffic_loses_and_duplicates_nothing(site: Site) -> None:
    """SIGKILL the hub server leading LIAISON_OUT mid-traffic: the other two carry on; counters equal.

    While it is down, messages sent after the kill are delivered (the exchange keeps
    working on two of three servers); then it restarts and catches up.
    """
    lab, running, name = site.lab, site.running, "multihost hub kill"
    with AuditClient.from_lab(running.root) as audit:
        before = audit.tree_head()
    victim = _stream_leader(running, "LIAISON_OUT")
    started = time.monotonic()
    with Inboxes(lab, OFFICES) as inboxes:
        traffic = Traffic(
            lab,
            [
                Plan(RU, 30, ((TJ,), (TJ, MIG)), pace_s=0.2),
                Plan(TJ, 30, ((RU,), (RU, MIG)), pace_s=0.2),
                Plan(MIG, 20, ((TJ,), (RU, TJ)), alerts=False, pace_s=0.2),
            ],
            tag="hubkill",
        ).start()
        wait_for("20 messages sent", lambda: traffic.count() >= 20, 60.0)
        running.procs.kill_nats(victim)
        killed_at = traffic.count()
        down_at = time.monotonic()
        wait_for("15 more messages sent", lambda: traffic.count() >= killed_at + 15, 60.0)
        while_down = dict(traffic.sent)
        wait_for("delivery with a hub server down", lambda: inboxes.has_all(while_down), DRAIN_S)
        down_s = time.monotonic() - down_at
        running.procs.restart_nats(victim)
        traffic.join()
        took = wait_delivered(inboxes, traffic, timeout=DRAIN_S)
        counters = count_counters(lab, name, traffic, inboxes)
    verify_audit_log(lab, [before])
    print(
        f"[{name}] killed {victim} after {killed_at} sent; {len(while_down)} sent and delivered while it "
        f"was down ({down_s:.1f}s); all delivered {took:.1f}s after "
        f"the last Send; counters {counters}; total {time.monotonic() - started:.1f}s"
    )
