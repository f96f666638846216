"""The office node's metrics: its counters, latency histogram and out-queue depth, and their sampler.

What it does: ``OfficeMetrics`` adds to ``exchange.runtime.metrics.NodeMetrics``
the office's counters (sent, delivered, duplicates, refused by reason), the
end-to-end latency histogram and the out-queue depth. The office node calls
the small ``on_*`` hooks on its paths; ``sample_office`` refreshes the gauges
that need a read (queue depth, consumer lag).

What it does not: labels carry ids and reason codes only, never message
content; the endpoint and loops are ``exchange.runtime.metrics``'.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Final

from prometheus_client import Counter, Gauge, Histogram

from exchange.core.clock import now_ms
from exchange.core.model import Reason
from exchange.core.wire import IN_STREAM, office_durable
from exchange.nats.transport import Transport
from exchange.runtime.metrics import NodeMetrics, consumer_lag

if TYPE_CHECKING:
    from exchange.core.directory import DirectoryState
    from exchange.office.store import OfficeStore

__all__ = ["LATENCY_BUCKETS_S", "OfficeMetrics", "out_queue_depth", "sample_office"]

# From a LAN hop to an office that was offline for an hour.
LATENCY_BUCKETS_S: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)


class OfficeMetrics(NodeMetrics):
    """An office node's metrics; the node calls the ``on_*`` hooks."""

    def __init__(self, office: str) -> None:
        super().__init__("office", office)
        r = self.registry
        self.sent = Counter(
            "liaison_office_messages_sent", "Messages accepted from agency systems (ACCEPTED).", registry=r
        )
        self.delivered = Counter(
            "liaison_office_messages_delivered",
            "Messages received, opened and stored in the inbox.",
            registry=r,
        )
        self.duplicates = Counter(
            "liaison_office_messages_duplicate", "Deliveries dropped as already in the inbox.", registry=r
        )
        self.refused = Counter(
            "liaison_office_inbound_refused",
            "Inbound frames refused by this office, by reason.",
            ["reason"],
            registry=r,
        )
        for reason in Reason:
            self.refused.labels(reason=reason.label)
        self.latency = Histogram(
            "liaison_end_to_end_latency_seconds",
            "Creation at the sender to storage in this office's inbox (header times).",
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.out_queue = Gauge(
            "liaison_office_out_queue_frames", "Frames stored and not yet published to NATS.", registry=r
        )
        self.log_alarms = Counter(
            "liaison_office_log_alarms",
            "Log proofs that failed (proof: not in the log; fork: heads disagree; unlinked: link not held).",
            ["check"],
            registry=r,
        )
        for check in ("proof", "fork", "unlinked"):
            self.log_alarms.labels(check=check)

    def on_sent(self) -> None:
        self.sent.inc()

    def on_delivered(self, created_ms: int, delivered_ms: int) -> None:
        self.delivered.inc()
        # Clocks of two sites: a negative figure is skew, counted as zero.
        self.latency.observe(max(0, delivered_ms - created_ms) / 1000)

    def on_duplicate(self) -> None:
        self.duplicates.inc()

    def on_refused(self, reason: str) -> None:
        self.refused.labels(reason=reason).inc()

    def on_log_alarm(self, check: str) -> None:
        self.log_alarms.labels(check=check).inc()


def out_queue_depth(store: OfficeStore) -> int:
    """Frames not yet published (a count over the ``frames_pending`` index: cheap; also the store check)."""
    return store.pending_count()


async def sample_office(
    m: OfficeMetrics, transport: Transport, *, office: str, directory: DirectoryState, store: OfficeStore
) -> None:
    """Refresh an office's sampled gauges: connection, directory, out-queue, consumer lag."""
    m.nats_connected.set(1 if transport.is_connected else 0)
    m.observe_directory(directory.directory, now_ms())
    m.out_queue.set(await asyncio.to_thread(out_queue_depth, store))
    if transport.is_connected:
        durable = office_durable(office)
        lag = await consumer_lag(transport, IN_STREAM, durable)
        if lag is not None:
            m.set_lag(IN_STREAM, durable, lag)
