"""SIGKILL one of the three hub nats-servers under steady traffic; the exchange keeps working.

Each test runs its own lab in the cluster topology (three clustered hub
servers with R3 streams, one leaf node server per office, the gateway on all
three hub servers, each office node on its own leaf), sends traffic from two
offices, and at a seeded random point (the seed is printed;
``LIAISON_FAULT_SEED`` replays it) SIGKILLs one hub server:

- ``leader``: the server leading ``LIAISON_OUT`` (where every office's
  frames land), so the stream must elect a new leader before it takes
  writes again;
- ``meta-leader``: the JetStream meta leader (which may or may not lead
  ``LIAISON_OUT`` too), so the cluster must elect a new one;
- ``follower``: a server that leads neither ``LIAISON_OUT`` nor the
  JetStream meta group.

Traffic keeps flowing while it is down; then it is restarted on the same
ports and store, and a second burst is sent once its replicas have caught
up. Afterwards every Send that returned an id has an ACCEPTED
receipt, reached each recipient's agency system exactly once, and is in
the audit log exactly once as ACCEPTED; the log verifies against the head
signed before the fault. The counters, the time until the stream had a
leader again and until the restarted server's replicas were current are
printed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from exchange.core.wire import OUT_STREAM
from gateway.client import AuditClient
from liaison.lab.cluster import RenderedNatsServer, jsz
from liaison.lab.lab import Lab
from tests.faults.faultutil import (
    Inboxes,
    KillPlan,
    Plan,
    Traffic,
    count_counters,
    fault_rng,
    verify_audit_log,
    wait_delivered,
)
from tests.integration.labutil import INVENTORY, wait_for

RU, TJ, MIG = "ru-mvd-dushanbe", "tj-mvd-moscow", "tj-migration-moscow"
OFFICES = [RU, TJ, MIG]
RECOVERY_S = 60.0  # NOTES: an R3 stream whose leader was SIGKILLed took writes again after ~6 s


@pytest.fixture
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    lab = Lab(tmp_path_factory.mktemp("hub-kill"), inventory=INVENTORY, topology="cluster")
    with lab:
        yield lab


def _stream(hub: RenderedNatsServer, name: str) -> dict[str, Any]:
    for account in jsz(hub).get("account_details", []):
        for stream in account.get("stream_detail", []):
            if stream["name"] == name:
                return dict(stream)
    return {}


def _leader_view(lab: Lab, name: str) -> dict[str, Any]:
    """``name``'s report from the running hub server that leads it ({} while it has no leader)."""
    for hub in lab.hub_servers:
        stream = _stream(hub, name)
        if stream and stream["cluster"].get("leader") == hub.server_name:
            return stream
    return {}


def _all_current(lab: Lab, name: str) -> bool:
    view = _leader_view(lab, name)
    replicas = view.get("cluster", {}).get("replicas", [])
    return len(replicas) == 2 and all(r.get("current") for r in replicas)


def _victim(lab: Lab, role: str) -> RenderedNatsServer:
    assert lab.cluster is not None
    wait_for(lambda: bool(_leader_view(lab, OUT_STREAM)), what=f"a leader for {OUT_STREAM}")
    stream_leader = _leader_view(lab, OUT_STREAM)["cluster"]["leader"]
    by_name = {h.server_name: h for h in lab.hub_servers}
    if role == "leader":
        return by_name[stream_leader]
    if role == "meta-leader":
        return by_name[lab.cluster.meta_leader()]
    others = [n for n in by_name if n not in (stream_leader, lab.cluster.meta_leader())]
    return by_name[others[0] if others else next(n for n in by_name if n != stream_leader)]


@pytest.mark.slow
@pytest.mark.parametrize("role", ["leader", "meta-leader", "follower"])
def test_hub_server_sigkill_under_traffic_loses_and_duplicates_nothing(lab: Lab, role: str) -> None:
    cluster = lab.cluster
    assert cluster is not None
    name = f"kill hub {role}"
    rng = fault_rng(name)
    traffic = Traffic(
        lab,
        [
            Plan(RU, 60, ((TJ,), (TJ, MIG), (TJ,), (MIG,))),
            Plan(MIG, 40, ((TJ,), (RU, TJ)), alerts=False),
        ],
        tag=f"h{rng.randrange(10**6)}",
    )
    plan = KillPlan.draw(rng, traffic.total, down=(3.0, 8.0))
    print(f"[{name}] {plan}")
    with AuditClient.from_lab(lab.root) as audit:
        before = audit.tree_head()
    nodes = {n: node.pid for n, node in lab.nodes.items()}
    leafs = {o: leaf.pid for o, leaf in lab.leafs.items()}
    started = time.monotonic()
    with Inboxes(lab, OFFICES) as inboxes:
        traffic.start()
        wait_for(lambda: traffic.count() >= plan.after_sent, what=f"{plan.after_sent} messages sent")
        time.sleep(plan.extra_s)
        victim = _victim(lab, role)
        meta, out_leader = cluster.meta_leader(), _leader_view(lab, OUT_STREAM)["cluster"]["leader"]
        killed_at = traffic.count()
        victim.kill()
        killed = time.monotonic()
        print(
            f"[{name}] SIGKILLed {victim.server_name} after {killed_at} sent "
            f"(meta leader {meta}, {OUT_STREAM} leader {out_leader})"
        )
        wait_for(
            lambda: (
                _leader_view(lab, OUT_STREAM).get("cluster", {}).get("leader")
                not in (None, victim.server_name)
            ),
            timeout=RECOVERY_S,
            what=f"{OUT_STREAM} to have a leader on a surviving server",
        )
        leader_again_s = time.monotonic() - killed
        new_leader = _leader_view(lab, OUT_STREAM)["cluster"]["leader"]
        sent_while_down_from = traffic.count()
        wait_for(
            lambda: cluster.meta_leader() not in ("", victim.server_name),
            timeout=RECOVERY_S,
            what="a JetStream meta leader among the surviving servers",
        )
        meta_again_s = time.monotonic() - killed
        time.sleep(max(0.0, plan.down_s - (time.monotonic() - killed)))
        sent_while_down = traffic.count() - killed_at
        victim.start()  # same ports (pinned), same store: it rejoins the cluster and catches up
        restarted = time.monotonic()
        wait_for(cluster.all_leaf_links_up, timeout=RECOVERY_S, what="every leaf link")
        wait_for(
            lambda: _all_current(lab, OUT_STREAM),
            timeout=RECOVERY_S,
            what="the restarted replica to catch up",
        )
        caught_up_s = time.monotonic() - restarted
        traffic.join()
        # A second burst once the server is back: the cluster takes writes on all three again.
        after = Traffic(
            lab, [Plan(RU, 15, ((TJ, MIG),)), Plan(MIG, 15, ((RU,),), alerts=False)], tag=traffic.tag + "b"
        )
        after.start()
        after.join()
        traffic.absorb(after)
        took = wait_delivered(inboxes, traffic)
    print(
        f"[{name}] {OUT_STREAM} led by {new_leader} {leader_again_s:.1f}s after the kill, "
        f"meta leader {cluster.meta_leader()} after {meta_again_s:.1f}s; "
        f"down {restarted - killed:.1f}s with {sent_while_down} sent meanwhile "
        f"({sent_while_down_from - killed_at} before a new leader); replicas current {caught_up_s:.1f}s "
        f"after the restart; all delivered {took:.1f}s after the last Send"
    )
    assert sent_while_down > 0, "traffic did not flow while the hub server was down"
    # Nothing but the hub server was restarted: nodes and leaf servers reconnected on their own.
    assert {n: node.pid for n, node in lab.nodes.items()} == nodes
    assert {o: leaf.pid for o, leaf in lab.leafs.items()} == leafs
    count_counters(lab, name, traffic, inboxes)
    verify_audit_log(lab, [before])
    print(f"[{name}] total {time.monotonic() - started:.1f}s")
