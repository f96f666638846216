"""Prometheus metrics of the gateway: decisions, processing latency, audit log and witnesses.

What it does: ``GatewayMetrics`` adds to ``exchange.runtime.metrics.NodeMetrics`` the
gateway's counters (accepted, rejected by reason, receipts by state,
resumed), its processing latency histogram (a frame from hand-over by the
consumer to its durable audit record and routing), the audit writer's
pending records and commit sizes, and the audit log gauges: size, latest
signed tree head size and age, and witness lag (entries of the latest head
not covered by a co-signed head). ``AuditSampler`` computes the audit
gauges from the store; ``sample_gateway`` refreshes them with the consumer
lag of every ``gateway-*`` consumer of the out stream.

What it does not: it never reads audit records' content; the co-signed
size is learned from the latest head's co-signatures and from co-signatures
the node stores while running (a co-signature of an older head stored
before a restart is not seen until the witness co-signs a newer one).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

from prometheus_client import Counter, Gauge, Histogram

from exchange.core.clock import now_ms
from exchange.core.directory import DirectoryState
from exchange.core.model import Reason, ReceiptState
from exchange.core.wire import GATEWAY_DURABLE_PREFIX, OUT_STREAM
from exchange.nats.transport import Transport
from exchange.runtime.metrics import NodeMetrics, stream_consumer_lags
from gateway.audit.codec import decode_signed_tree_head
from gateway.audit.store import AuditStore

__all__ = ["PROCESSING_BUCKETS_S", "AuditSample", "AuditSampler", "GatewayMetrics", "sample_gateway"]

PROCESSING_BUCKETS_S: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_COMMIT_BUCKETS: Final = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class GatewayMetrics(NodeMetrics):
    """The gateway's metrics; the node calls the ``on_*`` hooks and ``timed``."""

    def __init__(self, gateway: str) -> None:
        super().__init__("gateway", gateway)
        r = self.registry
        self.accepted = Counter("liaison_gateway_accepted", "Messages accepted and routed.", registry=r)
        self.rejected = Counter(
            "liaison_gateway_rejected", "Frames refused (and audited), by reason.", ["reason"], registry=r
        )
        for reason in Reason:
            self.rejected.labels(reason=reason.label)
        self.receipts = Counter(
            "liaison_gateway_receipts", "Receipts audited and forwarded, by state.", ["state"], registry=r
        )
        for state in ReceiptState:
            self.receipts.labels(state=state.name)
        self.resumed = Counter(
            "liaison_gateway_resumed", "Accepted frames routed again after a restart.", registry=r
        )
        self.processing = Histogram(
            "liaison_gateway_processing_seconds",
            "From a frame's hand-over by the consumer to its durable audit record and routing.",
            buckets=PROCESSING_BUCKETS_S,
            registry=r,
        )
        self.writer_pending = Gauge(
            "liaison_audit_writer_pending", "Audit records waiting for the next commit.", registry=r
        )
        self.commit_records = Histogram(
            "liaison_audit_commit_records",
            "Audit records per group commit.",
            buckets=_COMMIT_BUCKETS,
            registry=r,
        )
        self.log_size = Gauge("liaison_audit_log_size", "Entries in the audit log.", registry=r)
        self.head_size = Gauge("liaison_tree_head_size", "Size of the latest signed tree head.", registry=r)
        self.head_age = Gauge(
            "liaison_tree_head_age_seconds",
            "Seconds since the latest signed tree head was signed.",
            registry=r,
        )
        self.witness_lag = Gauge(
            "liaison_witness_lag_entries",
            "Latest signed tree head size minus the largest co-signed size.",
            registry=r,
        )
        self.sampler = AuditSampler()

    # --- hooks ---------------------------------------------------------------------------

    def on_accepted(self) -> None:
        self.accepted.inc()

    def on_rejected(self, reason: str) -> None:
        self.rejected.labels(reason=reason).inc()

    def on_receipt(self, state: str) -> None:
        self.receipts.labels(state=state).inc()

    def on_resumed(self) -> None:
        self.resumed.inc()

    def on_commit(self, records: int) -> None:
        self.commit_records.observe(records)

    def on_cosigned(self, size: int) -> None:
        self.sampler.cosigned(size)

    def watch_writer(self, pending: Callable[[], int]) -> None:
        """Read the audit writer's queue length at each scrape."""
        self.writer_pending.set_function(lambda: float(pending()))

    async def timed(self, work: Awaitable[None]) -> None:
        started = time.perf_counter()
        try:
            await work
        finally:
            self.processing.observe(time.perf_counter() - started)

    def set_audit(self, sample: AuditSample) -> None:
        self.log_size.set(sample.size)
        self.head_size.set(sample.head_size)
        if sample.head_age_s is not None:
            self.head_age.set(sample.head_age_s)
        self.witness_lag.set(sample.witness_lag)


@dataclass(frozen=True)
class AuditSample:
    size: int
    head_size: int
    head_age_s: float | None  # None: no head signed yet
    witness_lag: int


class AuditSampler:
    """Audit log gauges from the store, remembering the largest co-signed size it has seen."""

    def __init__(self) -> None:
        self._cosigned = 0

    def cosigned(self, size: int) -> None:
        self._cosigned = max(self._cosigned, size)

    def sample(self, store: AuditStore, now_ms: int) -> AuditSample:
        """Cheap reads only: the size, the latest head and that head's co-signatures."""
        size = store.size()
        latest = store.latest_tree_head()
        if latest is None:
            return AuditSample(size, 0, None, 0)
        head_size, signed = latest
        if store.cosignatures(head_size):
            self.cosigned(head_size)
        timestamp_ms = decode_signed_tree_head(signed).tree_head.timestamp_ms
        return AuditSample(
            size=size,
            head_size=head_size,
            head_age_s=max(0, now_ms - timestamp_ms) / 1000,
            witness_lag=max(0, head_size - self._cosigned),
        )


async def sample_gateway(
    m: GatewayMetrics, transport: Transport, *, directory: DirectoryState, store: AuditStore
) -> None:
    """Refresh the gateway's sampled gauges: connection, directory, audit log, consumer lag."""
    m.nats_connected.set(1 if transport.is_connected else 0)
    m.observe_directory(directory.directory, now_ms())
    m.set_audit(await asyncio.to_thread(m.sampler.sample, store, now_ms()))
    if transport.is_connected:
        for consumer, lag in (
            await stream_consumer_lags(transport, OUT_STREAM, GATEWAY_DURABLE_PREFIX)
        ).items():
            m.set_lag(OUT_STREAM, consumer, lag)
