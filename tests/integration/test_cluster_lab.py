"""The end-to-end tests against the lab's cluster topology (the real-site NATS topology).

``Lab(topology="cluster")`` runs a three-server JetStream hub (domain ``hub``,
R3 streams, mutual TLS on routes and leaf links) and one leaf node server per
office; each office node talks only to its own leaf server. The exchange
tests of ``test_exchange`` run here unchanged against that lab (pytest
resolves their ``lab`` fixture to this module's): every body type delivered
and READ, multi-recipient, resume, case threads, policy refusal, the
gateway's refusal paths with frames injected through the office's own leaf
server, replay, malformed frames. Added here: an offline recipient gets
everything in order after its restart, the hub's streams are R3, each node's
NATS connection goes where the topology says, an office node certificate
is no hub user, lab.json describes the cluster, and ``liaison lab up
--topology cluster`` works from the command line.
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from exchange.client.sdk import Client
from exchange.core.errors import TransportError
from exchange.core.model import ReceiptState
from exchange.nats.transport import connect
from gateway.audit.record import Verdict
from gateway.client import AuditClient, AuditFilter
from liaison.lab.cluster import RenderedNatsServer, jsz
from liaison.lab.lab import Lab
from tests.integration.labutil import INVENTORY, wait_for
from tests.integration.test_exchange import (  # noqa: F401 - collected and run here against the cluster
    audit,
    clients,
    test_case_thread_and_offices,
    test_each_body_type_reaches_read,
    test_gateway_refusals_reach_status_and_audit,
    test_malformed_frame_is_audited,
    test_multi_recipient_alert,
    test_policy_rejection_is_signed_and_audited,
    test_replay_after_the_duplicate_window_is_refused,
    test_sender_mismatch_is_refused,
    test_subscribe_resumes_without_loss_or_duplicates,
)

pytestmark = pytest.mark.slow

RU, TJ, MIG = "ru-mvd-dushanbe", "tj-mvd-moscow", "tj-migration-moscow"
OFFICES = (RU, TJ, MIG)
CLI_START_S = 120.0


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    lab = Lab(tmp_path_factory.mktemp("cluster-lab"), inventory=INVENTORY, topology="cluster")
    started = time.monotonic()
    with lab:
        print(f"\n[cluster lab] up in {time.monotonic() - started:.1f}s")
        yield lab


def test_offline_recipient_receives_everything_in_order(lab: Lab) -> None:
    """Messages for a stopped office wait in the hub's R3 stream; after its restart all arrive in order."""
    lab.nodes[TJ].stop()
    with Client.from_lab(lab.root, RU) as ru:
        ids = [
            ru.send_case_message([TJ], case_id="CLUSTER-OUTAGE", text=f"message {i}").message_id
            for i in range(10)
        ]
        wait_for(
            lambda: all(ru.status(m).recipients[0].state is ReceiptState.STAMPED for m in ids),
            what="the gateway to stamp every message while the recipient is down",
        )
    lab.start_node(TJ)
    order: list[str] = []
    deadline = time.monotonic() + 60.0
    with Client.from_lab(lab.root, TJ) as tj:
        while set(order) < set(ids) and time.monotonic() < deadline:
            for d in tj.subscribe(wait_s=1.0):
                if d.message_id in ids:
                    order.append(d.message_id)
                    tj.ack(d.message_id)
    assert order == ids, "all delivered, once each, in the sender's order"
    with AuditClient.from_lab(lab.root) as audit_client:
        accepted = sum(
            r.record.verdict is Verdict.ACCEPTED
            for m in ids
            for r in audit_client.query(AuditFilter(message_id=m))[0]
        )
    assert accepted == len(ids)


def _hub_streams(lab: Lab) -> dict[str, Any]:
    """Every hub stream's report as its leader gives it (only the leader knows if replicas are current)."""
    views: dict[str, Any] = {}
    for hub in lab.hub_servers:
        for account in jsz(hub).get("account_details", []):
            for stream in account.get("stream_detail", []):
                if stream["name"] not in views or stream["cluster"].get("leader") == hub.server_name:
                    views[stream["name"]] = stream
    return views


def test_hub_streams_are_r3_with_a_leader_and_two_current_replicas(lab: Lab) -> None:
    assert lab.cluster is not None
    names = {h.server_name for h in lab.hub_servers}
    assert len(names) == 3
    assert lab.cluster.meta_leader() in names
    streams = _hub_streams(lab)
    assert set(streams) >= {"LIAISON_OUT", "LIAISON_IN", "LIAISON_DIRECTORY"}, streams
    assert {name: s["config"]["num_replicas"] for name, s in streams.items()} == dict.fromkeys(streams, 3)

    def placed() -> bool:  # a replica may lag a moment behind under writes
        return all(
            s["cluster"].get("leader") in names
            and [r["current"] for r in s["cluster"].get("replicas", [])] == [True, True]
            for s in _hub_streams(lab).values()
        )

    wait_for(placed, what="every hub stream to have a leader and two current replicas")
    # No stream lives on a leaf server: the offices use the hub's JetStream through their leaf.
    for office, leaf in lab.leafs.items():
        assert jsz(leaf).get("streams") == 0, f"{office}'s leaf server holds streams"


def _connection_names(server: RenderedNatsServer) -> list[str]:
    connz = server.monitor("connz")
    return sorted(c.get("name", "") for c in connz.get("connections", []))


def test_each_office_node_talks_only_to_its_own_leaf(lab: Lab) -> None:
    assert lab.deployment is not None
    gateway = lab.deployment.inventory.gateway.id
    for office, leaf in lab.leafs.items():
        names = _connection_names(leaf)
        assert f"office-{office}" in names, (office, names)
        assert not [n for n in names if n.startswith(("office-", "gateway-")) and n != f"office-{office}"]
    on_hubs = [n for hub in lab.hub_servers for n in _connection_names(hub)]
    assert on_hubs.count(f"gateway-{gateway}") == 1, on_hubs
    assert not [n for n in on_hubs if n.startswith("office-")], on_hubs
    assert lab.cluster is not None
    assert lab.cluster.leaf_links() == len(OFFICES)
    doc = json.loads((lab.root / "lab.json").read_text())
    for entry in doc["offices"]:
        assert entry["nats"]["url"] == doc["nats_cluster"]["leafs"][entry["id"]]["url"]


async def test_hub_admits_no_office_node_directly(lab: Lab) -> None:
    """An office node certificate is no hub user: offices reach the hub only through their leaf link."""
    files = lab.pki.files(RU)
    ctx = ssl.create_default_context(cafile=str(files.ca))
    ctx.load_cert_chain(str(files.cert), str(files.key))
    with pytest.raises(TransportError):
        await connect(lab.nats_servers("embassy-gateway")[0], "intruder", tls=ctx, connect_timeout=2.0)


def test_lab_json_describes_the_cluster(lab: Lab) -> None:
    doc = json.loads((lab.root / "lab.json").read_text())
    assert doc["topology"] == "cluster"
    assert doc["nats_pid"] is None
    cluster = doc["nats_cluster"]
    assert cluster["domain"] == "hub"
    assert [h["name"] for h in cluster["hub"]] == ["hub-1", "hub-2", "hub-3"]
    assert doc["nats_url"] == ",".join(h["url"] for h in cluster["hub"])
    assert set(cluster["leafs"]) == set(OFFICES)
    for server in [*cluster["hub"], *cluster["leafs"].values()]:
        assert server["url"].startswith("tls://127.0.0.1:")
        os.kill(server["pid"], 0)  # alive
    assert {h.pid for h in lab.hub_servers} == {h["pid"] for h in cluster["hub"]}


def test_lab_up_topology_cluster_from_the_command_line(tmp_path: Path) -> None:
    """``liaison lab up --topology cluster`` starts, writes lab.json, and Ctrl-C leaves no process."""
    log = (tmp_path / "lab-up.log").open("wb")
    command = ["lab", "up", "--dir", str(tmp_path / "lab"), "--inventory", str(INVENTORY)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "liaison.cli", *command, "--topology", "cluster"],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    lab_json = tmp_path / "lab" / "lab.json"
    try:
        deadline = time.monotonic() + CLI_START_S
        while not lab_json.exists() or "Ctrl-C" not in (tmp_path / "lab-up.log").read_text():
            assert proc.poll() is None, (tmp_path / "lab-up.log").read_text()
            assert time.monotonic() < deadline, (tmp_path / "lab-up.log").read_text()
            time.sleep(0.5)
        doc = json.loads(lab_json.read_text())
        out = (tmp_path / "lab-up.log").read_text()
        assert "topology cluster" in out
        for hub in doc["nats_cluster"]["hub"]:
            assert hub["name"] in out
        with Client.from_lab(tmp_path / "lab", RU) as ru:
            assert ru.offices().self_id == RU
        pids = [h["pid"] for h in doc["nats_cluster"]["hub"]]
        pids += [leaf["pid"] for leaf in doc["nats_cluster"]["leafs"].values()]
        pids += [doc["gateway"]["pid"], *(o["pid"] for o in doc["offices"])]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
        log.close()
    assert proc.returncode == 0
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
