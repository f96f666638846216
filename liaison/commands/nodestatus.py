"""`liaison status --node …`: one node's health at a glance.

What it does: asks the node's gRPC server which services it offers
(reflection), asks gRPC health about each of them and about the whole
server (""), and, when a metrics URL is known (``--metrics`` or the lab's
``lab.json``), scrapes ``/metrics`` and condenses it into a few key
figures. ``summarize`` (pure) does the condensing; ``render`` the text.

What it does not: it changes nothing on the node, and prints no label
values other than ids and counts (metrics never carry content).
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

import grpc
from grpc_health.v1 import health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from exchange.client import connection
from exchange.client.connection import ClientTls, lab_node
from exchange.core.codec.health import (
    HEALTH_SERVICE,
    REFLECTION_SERVICE,
    health_check_request,
    health_status_name,
    list_services_request,
    listed_services,
)
from exchange.core.errors import ConfigError

__all__ = ["KEY_FIGURES", "NodeStatus", "check_node", "lab_node", "render", "summarize"]

UNREACHABLE: Final = "UNREACHABLE"
MAX_METRICS_BYTES: Final = 4 << 20

# (label, metric sample name, how samples of several label sets combine)
KEY_FIGURES: Final[tuple[tuple[str, str, str], ...]] = (
    ("NATS connected", "liaison_nats_connected", "sum"),
    ("directory version", "liaison_directory_version", "sum"),
    ("directory age (s)", "liaison_directory_age_seconds", "sum"),
    ("messages sent", "liaison_office_messages_sent_total", "sum"),
    ("messages delivered", "liaison_office_messages_delivered_total", "sum"),
    ("inbound refused", "liaison_office_inbound_refused_total", "sum"),
    ("out-queue frames", "liaison_office_out_queue_frames", "sum"),
    ("log alarms (proof, fork, unlinked)", "liaison_office_log_alarms_total", "sum"),
    ("accepted", "liaison_gateway_accepted_total", "sum"),
    ("rejected", "liaison_gateway_rejected_total", "sum"),
    ("receipts", "liaison_gateway_receipts_total", "sum"),
    ("audit log size", "liaison_audit_log_size", "sum"),
    ("tree head age (s)", "liaison_tree_head_age_seconds", "sum"),
    ("witness lag (entries)", "liaison_witness_lag_entries", "sum"),
    ("consumer lag (messages)", "liaison_jetstream_consumer_lag_messages", "sum"),
    ("key days to expiry (min)", "liaison_key_days_to_expiry", "min"),
    ("certificate days to expiry (min)", "liaison_certificate_days_to_expiry", "min"),
)
_SKIP_SERVICES: Final = frozenset({HEALTH_SERVICE, REFLECTION_SERVICE})


@dataclass(frozen=True)
class NodeStatus:
    target: str
    services: dict[str, str]  # "" is the whole server; values are health status names
    metrics_url: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    metrics_error: str = ""

    @property
    def serving(self) -> bool:
        return self.services.get("") == "SERVING"

    def as_json(self) -> dict[str, Any]:
        return {
            "node": self.target,
            "serving": self.serving,
            "services": {name or "(server)": status for name, status in self.services.items()},
            "metrics_url": self.metrics_url,
            "metrics": self.metrics,
            "metrics_error": self.metrics_error or None,
        }


def _services(channel: grpc.Channel, timeout: float) -> list[str]:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    for reply in stub.ServerReflectionInfo(iter([list_services_request()]), timeout=timeout):
        return sorted(name for name in listed_services(reply) if name not in _SKIP_SERVICES)
    return []


def _health(channel: grpc.Channel, timeout: float, services: Iterable[str]) -> dict[str, str]:
    stub = health_pb2_grpc.HealthStub(channel)
    result: dict[str, str] = {}
    for name in ("", *services):
        try:
            result[name] = health_status_name(stub.Check(health_check_request(name), timeout=timeout))
        except grpc.RpcError as e:
            code = e.code() if hasattr(e, "code") else None
            if code is grpc.StatusCode.NOT_FOUND:
                result[name] = "SERVICE_UNKNOWN"
            elif name == "":
                return {"": UNREACHABLE}
            else:
                result[name] = UNREACHABLE
    return result


def _scrape(url: str, timeout: float) -> str:
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"metrics URL {url!r} must be http:// or https://")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:  # noqa: S310 - scheme checked above
            return bytes(reply.read(MAX_METRICS_BYTES)).decode("utf-8", errors="replace")
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise ConfigError(f"cannot read metrics at {url}: {getattr(e, 'reason', e)}") from e


def summarize(text: str) -> dict[str, float]:
    """The key figures present in a Prometheus text exposition (pure)."""
    values: dict[str, list[float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values.setdefault(sample.name, []).append(float(sample.value))
    figures: dict[str, float] = {}
    for label, name, how in KEY_FIGURES:
        if name in values:
            figures[label] = min(values[name]) if how == "min" else sum(values[name])
    return figures


def check_node(
    target: str, *, tls: ClientTls | None = None, metrics_url: str | None = None, timeout: float = 5.0
) -> NodeStatus:
    """Health of every service of the node at ``target`` and, with ``metrics_url``, its key figures."""
    with connection.channel(target, tls) as channel:
        try:
            services = _services(channel, timeout)
        except grpc.RpcError:
            services = []  # no reflection (or unreachable): the overall status still tells
        statuses = _health(channel, timeout, services)
    if not metrics_url:
        return NodeStatus(target, statuses)
    try:
        figures = summarize(_scrape(metrics_url, timeout))
    except (ConfigError, ValueError) as e:
        return NodeStatus(target, statuses, metrics_url, metrics_error=str(e))
    return NodeStatus(target, statuses, metrics_url, figures)


def _number(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:.3f}"


def render(status: NodeStatus) -> str:
    lines = [f"node {status.target}  {status.services.get('', UNREACHABLE)}"]
    lines += [f"  {name or '(server)':40} {value}" for name, value in status.services.items()]
    if status.metrics_url:
        lines.append(f"metrics {status.metrics_url}")
        if status.metrics_error:
            lines.append(f"  unavailable: {status.metrics_error}")
        lines += [f"  {label:40} {_number(value)}" for label, value in status.metrics.items()]
    return "\n".join(lines)
