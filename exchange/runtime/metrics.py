"""Prometheus metrics every node exports, the HTTP endpoint that serves them, and the sampling loops.

What it does: ``NodeMetrics`` holds what every node exports (NATS connected,
health, JetStream consumer lag, directory version, key and certificate days
to expiry) in the node's own registry; node kinds subclass it
(``exchange.office.metrics.OfficeMetrics``, ``gateway.metrics.GatewayMetrics``).
Gauges that need a read (consumer lag) are sampled every few seconds by
``poll``. ``serve_metrics`` serves ``/metrics`` with prometheus_client's
aiohttp handler on the node's own event loop. ``run_with`` runs a node with
its watchers (health, metrics, expiry) beside it.

What it does not: labels carry ids and reason codes only, never message
content; it does not decide health (``exchange.runtime.health`` does).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import nats.errors
import nats.js.errors
import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.aiohttp import make_aiohttp_handler

from exchange.core.clock import now_ms
from exchange.core.errors import ConfigError, TransportError
from exchange.core.expiry import CERTIFICATE, KEY, ExpiryItem
from exchange.core.identity import OfficeIdentity
from exchange.core.model import Directory
from exchange.nats.transport import Transport
from exchange.runtime.config import MetricsConfig
from exchange.runtime.health import HealthReport, Prober, log_expiry, node_expiry, watch_health

__all__ = [
    "EXPIRY_CHECK_S",
    "METRICS_POLL_S",
    "ConsumerLag",
    "MetricsServer",
    "NodeMetrics",
    "consumer_lag",
    "metrics_endpoint",
    "node_watchers",
    "poll",
    "run_with",
    "serve_metrics",
    "stream_consumer_lags",
    "watch_expiry",
]

log = structlog.get_logger()

METRICS_POLL_S: Final = 2.0
EXPIRY_CHECK_S: Final = 3600.0


class NodeMetrics:
    """What every node exports, in a registry of its own (so nodes in one process do not clash)."""

    def __init__(self, role: str, node: str) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        info = Gauge("liaison_node_info", "This node: role and id (always 1).", ["role", "node"], registry=r)
        info.labels(role=role, node=node).set(1)
        self.nats_connected = Gauge(
            "liaison_nats_connected", "1 while the node's NATS connection is up.", registry=r
        )
        self.serving = Gauge("liaison_health_serving", "1 while gRPC health says SERVING.", registry=r)
        self.health_check_failing = Gauge(
            "liaison_health_check_failing", "1 for each health check that fails now.", ["check"], registry=r
        )
        for check in ("nats", "directory", "store"):
            self.health_check_failing.labels(check=check).set(0)
        self.consumer_lag = Gauge(
            "liaison_jetstream_consumer_lag_messages",
            "Messages in the stream not yet delivered to this node's consumer (num_pending).",
            ["stream", "consumer"],
            registry=r,
        )
        self.consumer_ack_pending = Gauge(
            "liaison_jetstream_consumer_ack_pending_messages",
            "Messages delivered to this node's consumer and not acknowledged yet.",
            ["stream", "consumer"],
            registry=r,
        )
        self.directory_version = Gauge(
            "liaison_directory_version", "Version of the signed directory the node applies.", registry=r
        )
        self.directory_age = Gauge(
            "liaison_directory_age_seconds",
            "Seconds since the directory the node applies was issued (a node frozen on an old one shows).",
            registry=r,
        )
        self.key_days = Gauge(
            "liaison_key_days_to_expiry", "Whole days until a key in use expires.", ["key"], registry=r
        )
        self.cert_days = Gauge(
            "liaison_certificate_days_to_expiry",
            "Whole days until a TLS certificate of the node expires.",
            ["certificate"],
            registry=r,
        )

    def observe_directory(self, directory: Directory, now_ms: int) -> None:
        self.directory_version.set(directory.version)
        self.directory_age.set(max(0, now_ms - directory.issued_ms) / 1000)

    def observe_health(self, report: HealthReport) -> None:
        self.serving.set(1 if report.serving else 0)
        failing = set(report.problems())
        for check in ("nats", "directory", "store"):
            self.health_check_failing.labels(check=check).set(1 if check in failing else 0)

    def set_expiry(self, items: Iterable[ExpiryItem]) -> None:
        self.key_days.clear()
        self.cert_days.clear()
        for item in items:
            if item.kind == KEY:
                self.key_days.labels(key=item.name).set(item.days_left)
            elif item.kind == CERTIFICATE:
                self.cert_days.labels(certificate=item.name).set(item.days_left)

    def set_lag(self, stream: str, consumer: str, lag: ConsumerLag) -> None:
        self.consumer_lag.labels(stream=stream, consumer=consumer).set(lag.pending)
        self.consumer_ack_pending.labels(stream=stream, consumer=consumer).set(lag.ack_pending)


# --- sampling -------------------------------------------------------------------------


@dataclass(frozen=True)
class ConsumerLag:
    pending: int  # in the stream, not yet delivered to the consumer
    ack_pending: int  # delivered, not yet acknowledged


async def consumer_lag(transport: Transport, stream: str, durable: str) -> ConsumerLag | None:
    """The lag of one durable consumer; None when it does not exist (yet)."""
    try:
        info = await transport.js.consumer_info(stream, durable, timeout=transport.request_timeout)
    except nats.js.errors.NotFoundError:
        return None
    except (TimeoutError, nats.errors.Error) as e:
        raise TransportError(f"cannot read consumer {durable} on {stream}: {type(e).__name__}") from e
    return ConsumerLag(int(info.num_pending or 0), int(info.num_ack_pending or 0))


async def stream_consumer_lags(transport: Transport, stream: str, prefix: str) -> dict[str, ConsumerLag]:
    """The lag of every consumer of ``stream`` whose name starts with ``prefix``."""
    try:
        infos = await transport.js.consumers_info(stream)
    except (TimeoutError, nats.errors.Error) as e:
        raise TransportError(f"cannot list the consumers of {stream}: {type(e).__name__}") from e
    return {
        info.name: ConsumerLag(int(info.num_pending or 0), int(info.num_ack_pending or 0))
        for info in infos
        if info.name and info.name.startswith(prefix)
    }


async def poll(sample: Callable[[], Awaitable[None]], interval: float = METRICS_POLL_S) -> None:
    """Call ``sample`` every ``interval`` seconds forever; a failed round is logged and skipped."""
    while True:
        try:
            await sample()
        except Exception as e:  # noqa: BLE001 - metrics must never stop a node
            log.info("metrics_sample_failed", error_type=type(e).__name__, error=str(e)[:200])
        await asyncio.sleep(interval)


async def watch_expiry(
    identity: OfficeIdentity,
    cert_files: Mapping[str, Path | None],
    metrics: NodeMetrics,
    interval: float = EXPIRY_CHECK_S,
) -> None:
    """Days to expiry into the gauges, and ``expiry_warning`` logs, now and every ``interval`` seconds."""
    while True:
        try:
            items = await asyncio.to_thread(node_expiry, identity, cert_files, now_ms())
        except Exception as e:  # noqa: BLE001 - a failed check is logged and tried again later
            log.warning("expiry_check_failed", error_type=type(e).__name__)
        else:
            metrics.set_expiry(items)
            log_expiry(items)
        await asyncio.sleep(interval)


def node_watchers(
    metrics: NodeMetrics,
    *,
    health: Any,
    services: Sequence[str],
    prober: Prober,
    ready: asyncio.Event,
    sample: Callable[[], Awaitable[None]],
    identity: OfficeIdentity,
    cert_files: Mapping[str, Path | None],
) -> list[Coroutine[Any, Any, None]]:
    """What runs beside every node (for ``run_with``): live health, sampled metrics, expiry."""
    return [
        watch_health(health, services, prober, ready=ready, on_report=metrics.observe_health),
        poll(sample),
        watch_expiry(identity, cert_files, metrics),
    ]


async def run_with(main: Coroutine[Any, Any, None], watchers: Iterable[Coroutine[Any, Any, None]]) -> None:
    """Run ``main``; the watchers run beside it and are cancelled when it ends (or fails)."""
    tasks = [asyncio.create_task(w) for w in watchers]
    try:
        await main
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


# --- HTTP -----------------------------------------------------------------------------


@dataclass
class MetricsServer:
    """The running ``/metrics`` endpoint; ``close`` stops it."""

    host: str
    port: int
    _runner: web.AppRunner = field(repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    async def close(self) -> None:
        await self._runner.cleanup()


@contextlib.asynccontextmanager
async def metrics_endpoint(
    cfg: MetricsConfig | None, registry: CollectorRegistry
) -> AsyncIterator[MetricsServer | None]:
    """``/metrics`` while the block runs when the node's config has a ``[metrics]`` section."""
    server = await serve_metrics(cfg.host, cfg.port, registry) if cfg else None
    try:
        yield server
    finally:
        if server is not None:
            await server.close()


async def serve_metrics(host: str, port: int, registry: CollectorRegistry) -> MetricsServer:
    """Serve ``registry`` at ``http://host:port/metrics`` (port 0: any free port) on this loop."""
    app = web.Application()
    app.router.add_get("/metrics", make_aiohttp_handler(registry))
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as e:
        await runner.cleanup()
        raise ConfigError(f"metrics cannot listen on {host}:{port}: {e.strerror}") from None
    bound = int(runner.addresses[0][1])
    log.info("metrics_serving", host=host, port=bound)
    return MetricsServer(host, bound, runner)
