"""The witness's metrics: how far behind the log it is, and whether that is a stall.

A registry of its own (``prometheus_client``), updated by
:class:`gateway.witness.runner.Witness` each round and served by the process
wiring (:mod:`liaison.serve.witness`) when the config has a ``[metrics]`` port.
What it does not do: decide anything; ``StateFile.stalled_for_ms`` does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Gauge

if TYPE_CHECKING:
    from gateway.witness.runner import StateFile

__all__ = ["WitnessMetrics"]


class WitnessMetrics:
    def __init__(self, witness: str) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        info = Gauge("liaison_witness_info", "This witness (always 1).", ["witness"], registry=r)
        info.labels(witness=witness).set(1)
        self.cosigned_size = Gauge(
            "liaison_witness_cosigned_size", "Size of the last tree head this witness co-signed.", registry=r
        )
        self.behind_seconds = Gauge(
            "liaison_witness_behind_seconds",
            "Seconds the log has been ahead of the co-signed head (0: caught up).",
            registry=r,
        )
        self.stalled = Gauge(
            "liaison_witness_stalled",
            "1 while the log has been ahead of the co-signed head for longer than stall_after_s.",
            registry=r,
        )

    def observe(self, state: StateFile, now_ms: int, stall_after_s: float) -> None:
        self.cosigned_size.set(state.last.size if state.last is not None else 0)
        behind = 0.0 if state.behind_since_ms is None else max(0, now_ms - state.behind_since_ms) / 1000
        self.behind_seconds.set(behind)
        self.stalled.set(1 if state.stalled_for_ms(now_ms, stall_after_s) is not None else 0)
