"""Metrics, health and node status: the parts that need no running node.

Hooks move their metrics, the audit sampler computes witness lag and head
age from a store, health rounds set gRPC health, expiry warnings start 30
days before an end, ``[metrics]`` config is parsed and checked, the
``/metrics`` endpoint serves a registry, and ``liaison status --node``'s
summary and lab lookup read what they should.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from grpc_health.v1 import health_pb2
from prometheus_client import CollectorRegistry, generate_latest
from structlog.testing import capture_logs

from exchange.core.errors import ConfigError
from exchange.core.expiry import CERTIFICATE, KEY, ExpiryItem
from exchange.core.identity import generate
from exchange.core.model import Directory
from exchange.office.config import load_office_config
from exchange.office.metrics import OfficeMetrics
from exchange.runtime.health import HealthReport, log_expiry, node_expiry, probe, watch_health
from exchange.runtime.metrics import serve_metrics
from gateway.audit.codec import encode_signed_tree_head, encode_tree_head
from gateway.audit.treehead import SignedTreeHead, TreeHead
from gateway.config import load_gateway_config
from gateway.metrics import AuditSampler, GatewayMetrics
from keys.pki import create_ca, issue
from liaison.cli import main
from liaison.commands.nodestatus import NodeStatus, lab_node, render, summarize
from liaison.natsserver import free_port

CA_PW = b"test-ca-passphrase"  # the deployment CA key is always encrypted

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def value(registry: CollectorRegistry, name: str, labels: dict[str, str] | None = None) -> float | None:
    return registry.get_sample_value(name, labels or {})


# --- hooks -----------------------------------------------------------------------------


def test_office_hooks_move_their_metrics() -> None:
    m = OfficeMetrics("ru-mvd-dushanbe")
    r = m.registry
    assert value(r, "liaison_office_messages_sent_total") == 0
    assert value(r, "liaison_office_inbound_refused_total", {"reason": "bad-signature"}) == 0
    m.on_sent()
    m.on_sent()
    m.on_delivered(created_ms=1_000, delivered_ms=1_250)
    m.on_delivered(created_ms=2_000, delivered_ms=1_900)  # the sender's clock ahead: counted as 0
    m.on_duplicate()
    m.on_refused("bad-signature")
    assert value(r, "liaison_office_messages_sent_total") == 2
    assert value(r, "liaison_office_messages_delivered_total") == 2
    assert value(r, "liaison_office_messages_duplicate_total") == 1
    assert value(r, "liaison_office_inbound_refused_total", {"reason": "bad-signature"}) == 1
    assert value(r, "liaison_end_to_end_latency_seconds_count") == 2
    assert value(r, "liaison_end_to_end_latency_seconds_sum") == pytest.approx(0.25)
    assert value(r, "liaison_node_info", {"role": "office", "node": "ru-mvd-dushanbe"}) == 1


async def test_gateway_hooks_move_their_metrics() -> None:
    m = GatewayMetrics("embassy-gateway")
    r = m.registry
    pending = [1, 2, 3]
    m.watch_writer(lambda: len(pending))
    m.on_accepted()
    m.on_rejected("policy-denied")
    m.on_receipt("DELIVERED")
    m.on_resumed()
    m.on_commit(5)
    await m.timed(asyncio.sleep(0.01))
    with pytest.raises(RuntimeError):
        await m.timed(_fail())
    assert value(r, "liaison_gateway_accepted_total") == 1
    assert value(r, "liaison_gateway_rejected_total", {"reason": "policy-denied"}) == 1
    assert value(r, "liaison_gateway_rejected_total", {"reason": "replay"}) == 0
    assert value(r, "liaison_gateway_receipts_total", {"state": "DELIVERED"}) == 1
    assert value(r, "liaison_gateway_resumed_total") == 1
    assert value(r, "liaison_audit_commit_records_sum") == 5
    assert value(r, "liaison_audit_writer_pending") == 3
    assert value(r, "liaison_gateway_processing_seconds_count") == 2  # failures are timed too
    assert value(r, "liaison_gateway_processing_seconds_sum") >= 0.01  # type: ignore[operator]


async def _fail() -> None:
    raise RuntimeError("handler failed")


def test_two_nodes_in_one_process_do_not_clash() -> None:
    a, b = OfficeMetrics("a-office"), OfficeMetrics("b-office")
    a.on_sent()
    assert value(b.registry, "liaison_office_messages_sent_total") == 0


def test_expiry_gauges_are_replaced_not_accumulated() -> None:
    m = OfficeMetrics("a-office")
    m.set_expiry([ExpiryItem("ed25519 k1", KEY, 40), ExpiryItem("grpc", CERTIFICATE, 300)])
    m.set_expiry([ExpiryItem("ed25519 k2", KEY, 39)])
    text = generate_latest(m.registry).decode()
    assert 'liaison_key_days_to_expiry{key="ed25519 k2"} 39.0' in text
    assert "k1" not in text
    assert "liaison_certificate_days_to_expiry{" not in text


# --- audit sampler --------------------------------------------------------------------


class FakeAuditStore:
    def __init__(self, size: int, head: tuple[int, bytes] | None, cosigned: set[int]) -> None:
        self._size, self._head, self._cosigned = size, head, cosigned

    def size(self) -> int:
        return self._size

    def latest_tree_head(self) -> tuple[int, bytes] | None:
        return self._head

    def cosignatures(self, size: int) -> dict[str, bytes]:
        return {"tj-embassy-moscow": b"sig"} if size in self._cosigned else {}


def _signed_head(size: int, timestamp_ms: int) -> bytes:
    head = TreeHead(size=size, root=b"\x00" * 32, timestamp_ms=timestamp_ms, gateway="embassy-gateway")
    return encode_signed_tree_head(SignedTreeHead(head, encode_tree_head(head), ()))


@pytest.mark.parametrize(
    ("size", "head_size", "cosigned", "told", "lag"),
    [
        pytest.param(10, 8, set(), 0, 8, id="never-cosigned"),
        pytest.param(10, 8, {8}, 0, 0, id="latest-cosigned"),
        pytest.param(10, 8, set(), 5, 3, id="older-head-cosigned-while-running"),
        pytest.param(10, 8, set(), 9, 0, id="never-negative"),
    ],
)
def test_witness_lag(size: int, head_size: int, cosigned: set[int], told: int, lag: int) -> None:
    sampler = AuditSampler()
    sampler.cosigned(told)
    store = FakeAuditStore(size, (head_size, _signed_head(head_size, 1_000)), cosigned)
    sample = sampler.sample(store, now_ms=3_500)  # type: ignore[arg-type]
    assert (sample.size, sample.head_size, sample.witness_lag) == (size, head_size, lag)
    assert sample.head_age_s == pytest.approx(2.5)


def test_witness_lag_remembers_the_largest_cosigned_size() -> None:
    sampler = AuditSampler()
    sampler.sample(FakeAuditStore(8, (8, _signed_head(8, 0)), {8}), now_ms=0)  # type: ignore[arg-type]
    later = sampler.sample(FakeAuditStore(12, (12, _signed_head(12, 0)), {8}), now_ms=0)  # type: ignore[arg-type]
    assert later.witness_lag == 4


def test_no_tree_head_yet() -> None:
    sample = AuditSampler().sample(FakeAuditStore(0, None, set()), now_ms=0)  # type: ignore[arg-type]
    assert (sample.head_size, sample.head_age_s, sample.witness_lag) == (0, None, 0)


# --- health -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("report", "serving", "problems"),
    [
        pytest.param(HealthReport(True, True, True), True, [], id="all-pass"),
        pytest.param(HealthReport(False, True, True), False, ["nats"], id="nats-down"),
        pytest.param(HealthReport(True, False, True), False, ["directory"], id="no-directory"),
        pytest.param(HealthReport(True, True, False), False, ["store"], id="store-broken"),
        pytest.param(HealthReport(False, False, False), False, ["nats", "directory", "store"], id="all-fail"),
    ],
)
def test_health_report(report: HealthReport, serving: bool, problems: list[str]) -> None:
    assert (report.serving, report.problems()) == (serving, problems)


def _never_read() -> None:
    raise OSError("disk gone")


@pytest.mark.parametrize(
    ("connected", "applied", "node", "store_read", "problems"),
    [
        pytest.param(True, True, "ru-mvd-dushanbe", lambda: 1, [], id="office-healthy"),
        pytest.param(True, True, "gw-dushanbe", lambda: 1, [], id="gateway-healthy"),
        pytest.param(False, True, "ru-mvd-dushanbe", lambda: 1, ["nats"], id="nats-down"),
        pytest.param(True, False, "ru-mvd-dushanbe", lambda: 1, ["directory"], id="no-directory"),
        pytest.param(True, True, "tj-closed-office", lambda: 1, ["directory"], id="node-not-listed"),
        pytest.param(True, True, "ru-mvd-dushanbe", _never_read, ["store"], id="store-read-fails"),
    ],
)
async def test_probe(
    directory: Directory,
    connected: bool,
    applied: bool,
    node: str,
    store_read: Callable[[], object],
    problems: list[str],
) -> None:
    state = SimpleNamespace(current=SimpleNamespace(directory=directory) if applied else None)
    transport = SimpleNamespace(is_connected=connected)
    report = await probe(transport, state, node, store_read)  # type: ignore[arg-type]
    assert report.problems() == problems
    # The detail: the directory in force and its age (0 when none is applied).
    assert report.directory_version == (directory.version if applied else 0)
    assert (report.directory_age_s > 0) is applied


class FakeHealth:
    def __init__(self) -> None:
        self.history: list[dict[str, int]] = []
        self.status: dict[str, int] = {}

    def set(self, service: str, status: int) -> None:
        self.status[service] = status
        if service == "":
            self.history.append(dict(self.status))


async def test_watch_health_follows_the_checks_after_ready() -> None:
    servicer = FakeHealth()
    reports = iter(
        [HealthReport(True, True, True), HealthReport(False, True, True), HealthReport(True, True, True)]
    )
    seen: list[HealthReport] = []

    async def prober() -> HealthReport:
        try:
            return next(reports)
        except StopIteration:
            raise RuntimeError("checks broke") from None

    ready = asyncio.Event()
    metrics = OfficeMetrics("a-office")

    def on_report(r: HealthReport) -> None:
        seen.append(r)
        metrics.observe_health(r)

    with capture_logs() as logs:
        task = asyncio.create_task(
            watch_health(servicer, ["svc"], prober, ready=ready, interval=0.01, on_report=on_report)
        )
        await asyncio.sleep(0.05)
        assert servicer.history == []  # nothing before the node is ready
        ready.set()
        for _ in range(200):
            if len(servicer.history) >= 4:
                break
            await asyncio.sleep(0.01)
        task.cancel()
    assert [h[""] for h in servicer.history[:4]] == [SERVING, NOT_SERVING, SERVING, NOT_SERVING]
    assert all(h["svc"] == h[""] for h in servicer.history)
    assert seen[1].problems() == ["nats"]
    events = [e["event"] for e in logs]
    assert events[:3] == ["health_serving", "health_not_serving", "health_serving"]
    assert value(metrics.registry, "liaison_health_serving") == 0
    assert value(metrics.registry, "liaison_health_check_failing", {"check": "store"}) == 1


# --- expiry -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("days", "warned"),
    [
        pytest.param(10, True, id="10-days"),
        pytest.param(30, True, id="30-days"),
        pytest.param(31, False, id="31-days"),
        pytest.param(-2, True, id="expired"),
    ],
)
def test_expiry_warning_from_30_days(days: int, warned: bool) -> None:
    with capture_logs() as logs:
        due = log_expiry([ExpiryItem("grpc", CERTIFICATE, days)])
    assert bool(due) == warned
    assert [e["event"] for e in logs] == (["expiry_warning"] if warned else [])
    if warned:
        assert logs[0]["days_left"] == days
        assert logs[0]["log_level"] == "warning"


def test_node_expiry_reads_keys_and_certificates(tmp_path: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    create_ca(tmp_path / "pki", "test", passphrase=CA_PW)
    issued = issue(tmp_path / "pki", "node", "ru-mvd-dushanbe", now=now, valid_days=20, ca_passphrase=CA_PW)
    identity = generate("ru-mvd-dushanbe", int(now.timestamp() * 1000), valid_days=100)
    garbage = tmp_path / "garbage.crt"
    garbage.write_bytes(b"not a certificate")
    with capture_logs() as logs:
        items = node_expiry(
            identity,
            {"grpc": issued.cert, "nats": None, "missing": tmp_path / "none.crt", "bad": garbage},
            int(now.timestamp() * 1000),
        )
    by_kind = {(i.kind, i.name.split()[0]) for i in items}
    assert (CERTIFICATE, "grpc") in by_kind
    assert {i.days_left for i in items if i.kind == KEY} == {100}
    assert next(i for i in items if i.name == "grpc").days_left in (19, 20)
    assert items[0].name == "grpc"  # soonest first
    assert {e["event"] for e in logs} == {"certificate_unreadable", "certificate_unparsable"}


# --- config ---------------------------------------------------------------------------------

_BASE = """
[keys]
dir = "keys"
[directory]
file = "directory.pb"
[nats]
url = "nats://127.0.0.1:4222"
[grpc]
listen = "127.0.0.1:0"
"""


@pytest.mark.parametrize("role", ["office", "gateway"])
def test_metrics_section_is_optional(tmp_path: Path, role: str) -> None:
    path = tmp_path / "node.toml"
    head = '[office]\nid = "ru-mvd-dushanbe"\n' if role == "office" else '[gateway]\nid = "embassy-gateway"\n'
    path.write_text(head + _BASE)
    load: Any = load_office_config if role == "office" else load_gateway_config
    assert load(path).metrics is None
    path.write_text(head + _BASE + '[metrics]\nlisten = "127.0.0.1:9464"\n')
    cfg = load(path).metrics
    assert (cfg.host, cfg.port, cfg.listen) == ("127.0.0.1", 9464, "127.0.0.1:9464")


@pytest.mark.parametrize(
    "listen",
    [
        pytest.param("9464", id="no-host"),
        pytest.param("127.0.0.1:http", id="port-not-a-number"),
        pytest.param("127.0.0.1:70000", id="port-too-large"),
        pytest.param("127.0.0.1:", id="port-missing"),
    ],
)
def test_bad_metrics_listen_is_a_one_line_error(tmp_path: Path, listen: str) -> None:
    path = tmp_path / "node.toml"
    path.write_text('[office]\nid = "ru-mvd-dushanbe"\n' + _BASE + f'[metrics]\nlisten = "{listen}"\n')
    with pytest.raises(ConfigError, match=r"\[metrics\] listen"):
        load_office_config(path)


# --- HTTP endpoint ----------------------------------------------------------------------


async def test_metrics_endpoint_serves_the_registry() -> None:
    m = OfficeMetrics("ru-mvd-dushanbe")
    m.on_sent()
    server = await serve_metrics("127.0.0.1", 0, m.registry)
    try:
        text = await asyncio.to_thread(lambda: urllib.request.urlopen(server.url, timeout=5).read().decode())
    finally:
        await server.close()
    assert "liaison_office_messages_sent_total 1.0" in text
    assert summarize(text)["messages sent"] == 1


async def test_metrics_endpoint_on_a_taken_port_is_a_config_error() -> None:
    first = await serve_metrics("127.0.0.1", 0, CollectorRegistry())
    try:
        with pytest.raises(ConfigError, match="metrics cannot listen"):
            await serve_metrics("127.0.0.1", first.port, CollectorRegistry())
    finally:
        await first.close()


# --- node status ------------------------------------------------------------------------------


def test_summarize_sums_counters_and_takes_the_soonest_expiry() -> None:
    m = GatewayMetrics("embassy-gateway")
    m.on_rejected("policy-denied")
    m.on_rejected("replay")
    m.set_expiry([ExpiryItem("ed25519 k", KEY, 700), ExpiryItem("grpc", CERTIFICATE, 12)])
    m.set_expiry([*[ExpiryItem("ed25519 k", KEY, 700)], ExpiryItem("grpc", CERTIFICATE, 12)])
    figures = summarize(generate_latest(m.registry).decode())
    assert figures["rejected"] == 2
    assert figures["key days to expiry (min)"] == 700
    assert figures["certificate days to expiry (min)"] == 12
    assert "messages sent" not in figures  # an office figure: absent on a gateway


def test_render_shows_services_and_figures() -> None:
    status = NodeStatus(
        "127.0.0.1:5000",
        {"": "SERVING", "liaison.v1.AuditService": "SERVING"},
        "http://127.0.0.1:9464/metrics",
        {"accepted": 3.0, "tree head age (s)": 1.25},
    )
    text = render(status)
    assert text.splitlines()[0] == "node 127.0.0.1:5000  SERVING"
    assert "liaison.v1.AuditService" in text
    assert "1.250" in text
    assert status.as_json()["services"] == {"(server)": "SERVING", "liaison.v1.AuditService": "SERVING"}


def test_lab_node_lookup(tmp_path: Path) -> None:
    tls = {"ca": "ca.crt", "cert": "op.crt", "key": "op.key"}
    (tmp_path / "lab.json").write_text(
        json.dumps(
            {
                "gateway": {"id": "embassy-gateway", "grpc": "127.0.0.1:1", "metrics": "http://g/metrics"},
                "offices": [{"id": "tj-mvd-moscow", "grpc": "127.0.0.1:2", "metrics": None}],
                "operator_tls": tls,
            }
        )
    )
    assert lab_node(tmp_path, "gateway")[::2] == ("127.0.0.1:1", "http://g/metrics")
    assert lab_node(tmp_path, "embassy-gateway")[0] == "127.0.0.1:1"
    target, client_tls, metrics = lab_node(tmp_path, "tj-mvd-moscow")
    assert (target, metrics) == ("127.0.0.1:2", None)
    assert client_tls is not None
    assert client_tls.cert == Path("op.crt")
    with pytest.raises(ConfigError, match="no node 'nowhere'"):
        lab_node(tmp_path, "nowhere")


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        pytest.param(["status"], "give a MESSAGE_ID", id="nothing-to-show"),
        pytest.param(["status", "--name", "gateway"], "--lab DIR --name NODE", id="name-without-lab"),
        pytest.param(["status", "--node", "127.0.0.1:1", "--ca", "ca.crt"], "needs all of", id="partial-tls"),
    ],
)
def test_status_cli_errors(argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert needle in capsys.readouterr().err


def test_status_of_an_unreachable_node(capsys: pytest.CaptureFixture[str]) -> None:
    started = time.monotonic()
    code = main(["status", "--node", f"127.0.0.1:{free_port()}", "--timeout", "1", "--json"])
    assert code == 1
    assert json.loads(capsys.readouterr().out)["services"] == {"(server)": "UNREACHABLE"}
    assert time.monotonic() - started < 10
