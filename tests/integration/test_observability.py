"""Metrics, live health and `liaison status --node` on a lab of real processes.

Every node of the lab serves ``/metrics`` (the lab turns ``[metrics]`` on).
Traffic (a case message, its READ receipt, a policy rejection) must move
every counter and histogram; gauges must hold sane values. Health follows
NATS: stopping the server turns the nodes NOT_SERVING, starting it turns
them back, and what an office accepted meanwhile waits in its out-queue
gauge until it is published. Consumer lag is checked against a bare
JetStream server where pending messages can be held still.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from exchange.client.sdk import Client
from exchange.core.model import AlertCategory, Algorithm, Priority
from exchange.core.wire import IN_STREAM, in_subject
from exchange.runtime.metrics import consumer_lag, stream_consumer_lags
from gateway.audit.treehead import sign_cosignature
from gateway.client import AuditClient
from liaison.cli import main
from liaison.lab.lab import Lab, NodeProcess
from liaison.natsserver import NatsServer
from tests.integration.conftest import ConnectTransport
from tests.integration.labutil import INVENTORY, directory, identity, wait_for

RU, TJ, MIG = "ru-mvd-dushanbe", "tj-mvd-moscow", "tj-migration-moscow"
OFFICES = (RU, TJ, MIG)
WITNESS = "tj-embassy-moscow"
HEALTH_WAIT_S = 20.0

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with Lab(tmp_path_factory.mktemp("lab"), inventory=INVENTORY) as lab:
        yield lab


@pytest.fixture(scope="module")
def clients(lab: Lab) -> Iterator[dict[str, Client]]:
    opened = {office: Client.from_lab(lab.root, office) for office in OFFICES}
    yield opened
    for c in opened.values():
        c.close()


def metrics_url(lab: Lab, name: str) -> str:
    doc = json.loads((lab.root / "lab.json").read_text())
    entry = doc["gateway"] if name == "gateway" else next(o for o in doc["offices"] if o["id"] == name)
    url = entry["metrics"]
    assert isinstance(url, str)
    assert url.startswith("http://127.0.0.1:")
    return url


def scrape(lab: Lab, name: str) -> Samples:
    with urllib.request.urlopen(metrics_url(lab, name), timeout=5) as reply:
        text = reply.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): float(s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def get(samples: Samples, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    assert key in samples, f"{name}{labels or ''} is not exported"
    return samples[key]


def series(samples: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: v for (n, labels), v in samples.items() if n == name}


def health(node: NodeProcess, service: str = "") -> int | None:
    assert node.health_tls is not None
    tls = node.health_tls
    creds = grpc.ssl_channel_credentials(tls.ca.read_bytes(), tls.key.read_bytes(), tls.cert.read_bytes())
    with grpc.secure_channel(node.grpc, creds) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=2.0
            )
        except grpc.RpcError:
            return None
    return int(reply.status)


def wait_metric(lab: Lab, name: str, predicate: Callable[[Samples], bool], what: str) -> Samples:
    found: list[Samples] = []

    def check() -> bool:
        samples = scrape(lab, name)
        found.append(samples)
        return predicate(samples)

    wait_for(check, what=f"{name}: {what}")
    return found[-1]


# --- traffic moves every metric ------------------------------------------------------


def test_every_metric_moves_with_traffic(lab: Lab, clients: dict[str, Client]) -> None:
    before = {name: scrape(lab, name) for name in ("gateway", *OFFICES)}
    g0 = before["gateway"]

    sent = clients[RU].send_case_message([TJ], case_id="OBS-1", text="observability")
    refused = clients[MIG].send_alert(
        [RU], category=AlertCategory.OTHER, priority=Priority.ROUTINE, subject="s", text="t"
    )
    assert sent.message_id != refused.message_id
    delivered_before = get(before[TJ], "liaison_office_messages_delivered_total")
    tj = wait_metric(
        lab,
        TJ,
        lambda s: get(s, "liaison_office_messages_delivered_total") > delivered_before,
        "the case message delivered",
    )
    clients[TJ].ack(sent.message_id)  # READ: a second receipt through the gateway
    read_before = get(g0, "liaison_gateway_receipts_total", state="READ")
    gw = wait_metric(
        lab,
        "gateway",
        lambda s: (
            get(s, "liaison_gateway_receipts_total", state="READ") > read_before
            and get(s, "liaison_gateway_rejected_total", reason="policy-denied")
            > get(g0, "liaison_gateway_rejected_total", reason="policy-denied")
            and get(s, "liaison_tree_head_size") >= get(s, "liaison_audit_log_size") > 0
            # The log size is a sampled gauge: wait for the sample that covers the traffic.
            and get(s, "liaison_audit_log_size") >= get(g0, "liaison_audit_log_size") + 4
        ),
        "the READ receipt, the rejection and a tree head covering them",
    )
    ru, mig = scrape(lab, RU), scrape(lab, MIG)

    # Offices: sent, delivered, end-to-end latency.
    assert (
        get(ru, "liaison_office_messages_sent_total")
        == get(before[RU], "liaison_office_messages_sent_total") + 1
    )
    assert (
        get(mig, "liaison_office_messages_sent_total")
        == get(before[MIG], "liaison_office_messages_sent_total") + 1
    )
    assert (
        get(tj, "liaison_end_to_end_latency_seconds_count")
        == get(before[TJ], "liaison_end_to_end_latency_seconds_count") + 1
    )
    assert 0 <= get(tj, "liaison_end_to_end_latency_seconds_sum") < 30
    assert get(tj, "liaison_end_to_end_latency_seconds_bucket", le="+Inf") >= 1

    # Gateway: accepted, rejected by reason, receipts by state, processing latency, audit log.
    assert get(gw, "liaison_gateway_accepted_total") >= get(g0, "liaison_gateway_accepted_total") + 1
    assert get(gw, "liaison_gateway_receipts_total", state="DELIVERED") >= (
        get(g0, "liaison_gateway_receipts_total", state="DELIVERED") + 1
    )
    assert (
        get(gw, "liaison_gateway_processing_seconds_count")
        >= get(g0, "liaison_gateway_processing_seconds_count") + 4
    )
    assert get(gw, "liaison_audit_commit_records_sum") >= get(g0, "liaison_audit_commit_records_sum") + 4
    assert get(gw, "liaison_audit_log_size") >= get(g0, "liaison_audit_log_size") + 4
    assert get(gw, "liaison_tree_head_size") > get(g0, "liaison_tree_head_size")
    assert 0 <= get(gw, "liaison_tree_head_age_seconds") < 30
    # No witness runs in the lab: the new entries are not co-signed.
    assert get(gw, "liaison_witness_lag_entries") <= get(gw, "liaison_tree_head_size")
    assert get(gw, "liaison_witness_lag_entries") > get(g0, "liaison_witness_lag_entries")

    # Queue depths exist and are drained at rest.
    assert get(gw, "liaison_audit_writer_pending") >= 0
    assert get(ru, "liaison_office_out_queue_frames") >= 0

    # Every node: consumer lag of its own consumers (sampled every few seconds once the
    # consumer exists), directory, NATS, health, expiry.
    def has_lag_of(names: set[str]) -> Callable[[Samples], bool]:
        lag = "liaison_jetstream_consumer_lag_messages"
        return lambda samples: {dict(labels)["consumer"] for labels in series(samples, lag)} >= names

    expected = {"gateway": {f"gateway-{o}" for o in OFFICES}} | {o: {f"office-{o}"} for o in OFFICES}
    version = directory(lab).version
    for name, consumer_names in expected.items():
        samples = wait_metric(lab, name, has_lag_of(consumer_names), "its consumer lag")
        assert all(v >= 0 for v in series(samples, "liaison_jetstream_consumer_lag_messages").values())
        if name != "gateway":
            assert (
                get(
                    samples,
                    "liaison_jetstream_consumer_lag_messages",
                    stream=IN_STREAM,
                    consumer=f"office-{name}",
                )
                >= 0
            )
        assert get(samples, "liaison_directory_version") == version
        assert get(samples, "liaison_nats_connected") == 1
        assert get(samples, "liaison_health_serving") == 1
        key_days = series(samples, "liaison_key_days_to_expiry")
        cert_days = series(samples, "liaison_certificate_days_to_expiry")
        assert key_days, f"{name}: no key expiry"
        assert all(0 < d <= 3660 for d in key_days.values())
        assert {dict(labels)["certificate"] for labels in cert_days} == {"grpc", "nats"}
        assert all(0 < d <= 400 for d in cert_days.values())


def test_witness_lag_falls_when_a_witness_cosigns(lab: Lab, clients: dict[str, Client]) -> None:
    clients[RU].send_case_message([MIG], case_id="OBS-W", text="to be witnessed")
    gw = wait_metric(lab, "gateway", lambda s: get(s, "liaison_witness_lag_entries") > 0, "a witness lag")
    key = identity(lab, WITNESS).key(Algorithm.ED25519).key
    with AuditClient.from_lab(lab.root) as audit:
        head = audit.tree_head()
        audit.add_cosignature(head.tree_head.size, sign_cosignature(head, WITNESS, key))
    cosigned = head.tree_head.size
    gw = wait_metric(
        lab,
        "gateway",
        lambda s: (
            get(s, "liaison_witness_lag_entries") == max(0, get(s, "liaison_tree_head_size") - cosigned)
        ),
        "witness lag measured from the co-signed head",
    )
    assert get(gw, "liaison_witness_lag_entries") < get(gw, "liaison_tree_head_size")


# --- health follows NATS -------------------------------------------------------------


def test_health_follows_nats_and_the_out_queue_waits(lab: Lab, clients: dict[str, Client]) -> None:
    assert lab.nats is not None
    office, gateway = lab.nodes[RU], lab.gateway
    serving = health_pb2.HealthCheckResponse.SERVING
    not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
    assert health(office) == serving
    assert health(office, "liaison.v1.ExchangeService") == serving
    lab.nats.stop()
    try:
        started = time.monotonic()
        wait_for(lambda: health(office) == not_serving, timeout=HEALTH_WAIT_S, what="office NOT_SERVING")
        took = time.monotonic() - started
        assert health(office, "liaison.v1.ExchangeService") == not_serving
        wait_for(lambda: health(gateway) == not_serving, timeout=HEALTH_WAIT_S, what="gateway NOT_SERVING")
        # The office still accepts: the message waits in its out-queue until NATS is back.
        queued = clients[RU].send_case_message([TJ], case_id="OBS-Q", text="while NATS is down")
        ru = wait_metric(
            lab, RU, lambda s: get(s, "liaison_office_out_queue_frames") >= 1, "a frame in the out-queue"
        )
        assert get(ru, "liaison_nats_connected") == 0
        assert get(ru, "liaison_health_serving") == 0
        assert get(ru, "liaison_health_check_failing", check="nats") == 1
    finally:
        lab.nats.start()
    wait_for(lambda: health(office) == serving, timeout=HEALTH_WAIT_S, what="office SERVING again")
    wait_for(lambda: health(gateway) == serving, timeout=HEALTH_WAIT_S, what="gateway SERVING again")
    wait_metric(lab, RU, lambda s: get(s, "liaison_office_out_queue_frames") == 0, "the out-queue drained")
    wait_for(
        lambda: any(d.message_id == queued.message_id for d in clients[TJ].subscribe(0, wait_s=0.5)),
        what="the queued message delivered",
    )
    assert took < HEALTH_WAIT_S


# --- liaison status --node ------------------------------------------------------------


def test_status_node_from_the_lab(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    wait_for(lambda: health(lab.gateway) == health_pb2.HealthCheckResponse.SERVING, what="gateway SERVING")
    capsys.readouterr()
    assert main(["status", "--lab", str(lab.root), "--name", "gateway", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["serving"] is True
    assert doc["services"] == {
        "(server)": "SERVING",
        "liaison.v1.AuditService": "SERVING",
        "liaison.v1.DirectoryService": "SERVING",
    }
    assert doc["metrics_url"] == metrics_url(lab, "gateway")
    assert {"audit log size", "tree head age (s)", "witness lag (entries)", "accepted"} <= set(doc["metrics"])


def test_status_node_by_address(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    tls = lab.nodes[TJ].health_tls
    assert tls is not None
    argv = ["status", "--node", lab.nodes[TJ].grpc, "--ca", str(tls.ca), "--cert", str(tls.cert)]
    argv += ["--key", str(tls.key), "--metrics", metrics_url(lab, TJ)]
    wait_for(lambda: health(lab.nodes[TJ]) == health_pb2.HealthCheckResponse.SERVING, what="office SERVING")
    capsys.readouterr()
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == f"node {lab.nodes[TJ].grpc}  SERVING"
    assert "liaison.v1.ExchangeService" in out
    assert "messages delivered" in out
    assert "certificate days to expiry (min)" in out


def test_status_of_a_message_still_works(
    lab: Lab, clients: dict[str, Client], capsys: pytest.CaptureFixture[str]
) -> None:
    sent = clients[RU].send_case_message([TJ], case_id="OBS-S", text="status")
    capsys.readouterr()
    assert main(["status", sent.message_id, "--lab", str(lab.root), "--office", RU, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["message_id"] == sent.message_id


# --- consumer lag ------------------------------------------------------------------------


async def test_consumer_lag_counts_pending_messages(
    nats_server: NatsServer, connect_transport: ConnectTransport, tmp_path: Path
) -> None:
    transport = await connect_transport(nats_server)
    await transport.ensure_streams()
    durable = "office-x-office"
    assert await consumer_lag(transport, IN_STREAM, durable) is None
    await transport.ensure_consumer(IN_STREAM, durable, in_subject("x-office"))
    assert (await consumer_lag(transport, IN_STREAM, durable)).pending == 0  # type: ignore[union-attr]
    for i in range(3):
        await transport.publish(in_subject("x-office"), b"frame", f"m{i}", 1)
    lag = await consumer_lag(transport, IN_STREAM, durable)
    assert lag is not None
    assert (lag.pending, lag.ack_pending) == (3, 0)
    sub = await transport.js.pull_subscribe_bind(durable=durable, stream=IN_STREAM)
    msgs = await sub.fetch(2, timeout=5)
    lag = await consumer_lag(transport, IN_STREAM, durable)
    assert lag is not None
    assert (lag.pending, lag.ack_pending) == (1, 2)
    for m in msgs:
        await m.ack_sync()
    lags = await stream_consumer_lags(transport, IN_STREAM, "office-")
    assert {name: (v.pending, v.ack_pending) for name, v in lags.items()} == {durable: (1, 0)}
    assert await stream_consumer_lags(transport, IN_STREAM, "gateway-") == {}
