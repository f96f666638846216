"""`liaison bench exchange --series`: the exchange measured over offices x senders x payload.

For each office count N the series builds one lab from a generated inventory
(``max(N, 2)`` offices, policy allowing case messages) and reuses it for every
(senders, payload) point. N offices send, each to the next one in a ring (one
office: A → B); the concurrent senders are split round-robin across them, so a
point with fewer senders than offices has only that many offices sending. Each
receiving office has one live Subscribe stream for the whole lab; a point sends
for a time budget or up to a message cap scaled by payload size (whichever
comes first) after a short warm-up, then waits, bounded, until every accepted
message is delivered.

Per point: accepted and delivered counts and rates, MiB/s, latency Send →
delivery (p50, p99; when senders outpace delivery it includes the backlog
built up during the point's sending time), the 1-minute load average at its
end, and ratios of the figures to baselines measured in the
same run at the same payload size: grpc.aio unary echo (same concurrency,
server in its own process), nats-py publish → subscribe and JetStream
publish-with-ack (pipelined). The baselines are one stream on one server; the
figures with several offices are sums over all of them.

It does not measure attachments, cluster topologies or a remote network: all
of it runs on loopback on this machine, the driver (this process) included.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from exchange.client.sdk import AsyncClient
from liaison.bench.exchange import echo_rate, echo_server, percentile
from liaison.bench.nats import baseline as nats_baseline
from liaison.lab.lab import Lab

__all__ = [
    "OFFICES",
    "PAYLOADS",
    "SENDERS",
    "SeriesBudget",
    "format_series_table",
    "office_ids",
    "run_series",
    "series_inventory",
]

OFFICES: Final = (1, 2, 4)
SENDERS: Final = (1, 16, 64)
PAYLOADS: Final = (1 << 10, 64 << 10, 1 << 20)
MIB: Final = 1 << 20
# Longest wait for the next delivery before a point is declared stuck.
STALL_TIMEOUT_S: Final = 60.0
_CASE: Final = "BENCH-SERIES"


def size_label(n: int) -> str:
    if n % (1 << 20) == 0:
        return f"{n >> 20} MiB"
    if n % 1024 == 0:
        return f"{n >> 10} KiB"
    return f"{n} B"


@dataclass(frozen=True)
class SeriesBudget:
    """Cost bounds per point, and for the baselines, so the whole series stays a few minutes."""

    seconds: float = 4.0  # sending time per point
    max_messages: int = 4000  # cap per point for small payloads
    max_bytes: int = 192 * MIB  # cap per point: max_bytes // payload messages (but at least `senders`)
    warmup: int = 8  # messages sent (and delivered) before each point, not measured
    baseline_bytes: int = 128 * MIB  # payload bytes per baseline measurement
    baseline_max_messages: int = 5000

    def point_messages(self, payload: int, senders: int) -> int:
        return max(senders, min(self.max_messages, self.max_bytes // payload))

    def baseline_messages(self, payload: int, concurrency: int) -> int:
        return max(4 * concurrency, min(self.baseline_max_messages, self.baseline_bytes // payload))


# --- the lab -------------------------------------------------------------------------


def office_ids(n: int) -> list[str]:
    return [f"bench-office-{i + 1}" for i in range(max(n, 2))]


def series_inventory(offices: int) -> str:
    """Inventory TOML for a lab with ``max(offices, 2)`` offices that may send each other case messages."""
    parts = [
        'deployment = "liaison-bench-series"\nthreshold = 2\n',
        '[[authorities]]\nid = "bench-authority-a"\ncountry = "RU"\nname = "Bench authority A"\n',
        '[[authorities]]\nid = "bench-authority-b"\ncountry = "TJ"\nname = "Bench authority B"\n',
        '[gateway]\nid = "bench-gateway"\ncountry = "RU"\nname = "Bench gateway"\n',
    ]
    for i, office in enumerate(office_ids(offices)):
        country = "RU" if i % 2 == 0 else "TJ"
        parts.append(
            f'[[offices]]\nid = "{office}"\ncountry = "{country}"\nagency = "Bench agency {i + 1}"\n'
            f'city = "Bench city {i + 1}"\nname = "Bench office {i + 1}"\n'
        )
        parts.append(f'[[policy]]\nsender = "{office}"\nkinds = ["case-message"]\nrecipients = ["*"]\n')
    parts.append(
        "[limits]\nmax_body_bytes = 8388608\nmax_envelope_bytes = 12582912\n"
        'max_clock_skew_s = 120\nmax_ttl_s = 2592000\nminimum_suite = "classic"\n'
    )
    return "\n".join(parts)


def _ring(offices: int) -> list[tuple[str, str]]:
    """(sender, recipient) per sending office: a ring, or A → B for one office."""
    ids = office_ids(offices)
    return [(ids[i], ids[(i + 1) % len(ids)]) for i in range(offices)]


@dataclass
class _Receivers:
    """One Subscribe stream per receiving office for the lab's life; records delivery times."""

    delivered_at: dict[str, float] = field(default_factory=dict)
    progress: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    clients: list[AsyncClient] = field(default_factory=list)

    def start(self, root: Path, offices: Sequence[str]) -> None:
        for office in offices:
            client = AsyncClient.from_lab(root, office)
            self.clients.append(client)
            self.tasks.append(asyncio.create_task(self._receive(client)))

    async def _receive(self, client: AsyncClient) -> None:
        async for delivery in client.subscribe(0):
            self.delivered_at[delivery.message_id] = time.perf_counter()
            self.progress.set()

    async def wait_for(self, ids: Sequence[str]) -> None:
        """Until every id in ``ids`` is delivered; raises if no delivery comes for STALL_TIMEOUT_S."""
        missing = [m for m in ids if m not in self.delivered_at]
        while missing:
            for task in self.tasks:
                if task.done():
                    task.result()  # a broken stream raises here
                    raise RuntimeError("a Subscribe stream ended")
            self.progress.clear()
            before = len(missing)
            missing = [m for m in missing if m not in self.delivered_at]
            if missing and len(missing) == before:
                try:
                    await asyncio.wait_for(self.progress.wait(), timeout=STALL_TIMEOUT_S)
                except TimeoutError:
                    raise RuntimeError(
                        f"{len(missing)} of {len(ids)} messages not delivered after {STALL_TIMEOUT_S:.0f} s"
                        " (--keep-labs keeps the labs' logs)"
                    ) from None

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for client in self.clients:
            await client.close()


@dataclass
class _Sent:
    """What one point's senders got back: accept times by message id, and failures by kind."""

    started: float
    at: dict[str, float] = field(default_factory=dict)
    last_accept: float = 0.0
    errors: list[str] = field(default_factory=list)


async def _send(
    routes: Sequence[tuple[AsyncClient, str]], senders: int, payload: int, count: int, seconds: float
) -> _Sent:
    """``senders`` workers over ``routes`` round-robin until ``count`` sent or ``seconds`` passed."""
    text = "x" * payload
    sent = _Sent(time.perf_counter())
    remaining = count
    deadline = sent.started + seconds

    async def worker(client: AsyncClient, recipient: str) -> None:
        nonlocal remaining
        while remaining > 0 and time.perf_counter() < deadline:
            remaining -= 1
            t0 = time.perf_counter()
            try:
                result = await client.send_case_message([recipient], case_id=_CASE, text=text)
            except Exception as e:  # noqa: BLE001 - counted and reported per point, not fatal
                sent.errors.append(type(e).__name__)
                continue
            sent.at[result.message_id] = t0
            sent.last_accept = time.perf_counter()

    await asyncio.gather(*(worker(*routes[i % len(routes)]) for i in range(senders)))
    return sent


async def _points(
    root: Path,
    offices: int,
    senders_list: Sequence[int],
    payloads: Sequence[int],
    *,
    budget: SeriesBudget,
    progress: Callable[[dict[str, Any]], None],
) -> list[dict[str, Any]]:
    ring = _ring(offices)
    receivers = _Receivers()
    receivers.start(root, sorted({r for _, r in ring}))
    senders_by_office = {s: AsyncClient.from_lab(root, s) for s, _ in ring}
    routes = [(senders_by_office[s], r) for s, r in ring]
    points: list[dict[str, Any]] = []
    try:
        for payload in payloads:
            for senders in senders_list:
                if budget.warmup > 0:
                    warm = await _send(routes, min(senders, budget.warmup), payload, budget.warmup, 60.0)
                    if warm.errors:
                        raise RuntimeError(f"warm-up sends failed: {sorted(set(warm.errors))}")
                    await receivers.wait_for(list(warm.at))
                count = budget.point_messages(payload, senders)
                sent = await _send(routes, senders, payload, count, budget.seconds)
                await receivers.wait_for(list(sent.at))
                point = {
                    "offices": offices,
                    "senders": senders,
                    "senders_per_office": [len(range(i, senders, len(routes))) for i in range(len(routes))],
                    "payload_bytes": payload,
                    **_figures(sent, receivers.delivered_at, payload),
                }
                point["sending_offices"] = sum(1 for n in point["senders_per_office"] if n)
                point["load_average_1m"] = os.getloadavg()[0]
                points.append(point)
                progress(point)
    finally:
        await receivers.close()
        for client in senders_by_office.values():
            await client.close()
    return points


def _figures(sent: _Sent, delivered_at: dict[str, float], payload: int) -> dict[str, Any]:
    delivered = {m: delivered_at[m] for m in sent.at if m in delivered_at}
    latencies = [(delivered[m] - t) * 1000 for m, t in sent.at.items() if m in delivered]
    accept_s = max(sent.last_accept - sent.started, 1e-9)
    deliver_s = max(max(delivered.values(), default=sent.started) - sent.started, 1e-9)
    delivered_rate = len(delivered) / deliver_s if delivered else 0.0
    return {
        "accepted": len(sent.at),
        "delivered": len(delivered),
        "errors": len(sent.errors),
        "error_kinds": sorted(set(sent.errors)),
        "accept_seconds": accept_s,
        "deliver_seconds": deliver_s,
        "accepted_per_s": len(sent.at) / accept_s if sent.at else 0.0,
        "delivered_per_s": delivered_rate,
        "delivered_mib_per_s": delivered_rate * payload / MIB,
        "latency_ms_p50": statistics.median(latencies) if latencies else 0.0,
        "latency_ms_p99": percentile(latencies, 0.99) if latencies else 0.0,
    }


# --- baselines -------------------------------------------------------------------------


async def _baselines(
    payloads: Sequence[int], senders_list: Sequence[int], budget: SeriesBudget
) -> dict[str, dict[str, Any]]:
    """Per payload: grpc.aio echo per concurrency, nats pub→sub, JetStream publish-with-ack."""
    out: dict[str, dict[str, Any]] = {}
    concurrency = max(senders_list)
    async with echo_server() as target:
        for payload in payloads:
            echo = {
                str(c): await echo_rate(target, payload, budget.baseline_messages(payload, c), c)
                for c in senders_list
            }
            out[str(payload)] = {"grpc_echo_calls_per_s": echo}
    for payload in payloads:
        nats = await nats_baseline(payload, budget.baseline_messages(payload, concurrency), concurrency)
        out[str(payload)].update(nats)
    return out


def _with_ratios(point: dict[str, Any], baselines: dict[str, dict[str, Any]]) -> dict[str, Any]:
    base = baselines[str(point["payload_bytes"])]
    echo = float(base["grpc_echo_calls_per_s"][str(point["senders"])])
    pubsub = float(base["core_pubsub_msgs_per_s"])
    js = float(base["js_pipelined_msgs_per_s"])
    point["ratios"] = {
        "accepted_vs_grpc_echo": point["accepted_per_s"] / echo,
        "delivered_vs_grpc_echo": point["delivered_per_s"] / echo,
        "delivered_vs_nats_pubsub": point["delivered_per_s"] / pubsub,
        "delivered_vs_jetstream": point["delivered_per_s"] / js,
    }
    return point


# --- the series ------------------------------------------------------------------------


def _machine() -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "load_average": list(os.getloadavg()),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
    }


def run_series(
    offices: Sequence[int] = OFFICES,
    senders: Sequence[int] = SENDERS,
    payloads: Sequence[int] = PAYLOADS,
    *,
    budget: SeriesBudget | None = None,
    progress: Callable[[dict[str, Any]], None] = lambda _: None,
    keep_labs: Path | None = None,
) -> dict[str, Any]:
    """Baselines, then one lab per office count for all its points; every point has ratios.

    With ``keep_labs`` each lab (logs, stores) stays in ``keep_labs/offices-<n>``; otherwise in a
    temporary folder removed afterwards.
    """
    budget = budget or SeriesBudget()
    if min(offices) < 1 or min(senders) < 1 or min(payloads) < 1:
        raise ValueError("office counts, senders and payload sizes must be at least 1")
    started = time.perf_counter()
    report: dict[str, Any] = {
        "machine": _machine(),
        "budget": vars(budget) | {"stall_timeout_s": STALL_TIMEOUT_S},
        "offices": list(offices),
        "senders": list(senders),
        "payloads": list(payloads),
    }
    baselines = asyncio.run(_baselines(payloads, senders, budget))
    report["baselines"] = baselines
    points: list[dict[str, Any]] = []
    for n in offices:
        with contextlib.ExitStack() as stack:
            if keep_labs is None:
                folder = Path(
                    stack.enter_context(tempfile.TemporaryDirectory(prefix="liaison-bench-series-"))
                )
            else:
                folder = keep_labs / f"offices-{n}"
                folder.mkdir(parents=True, exist_ok=False)
            inventory = folder / "inventory.toml"
            inventory.write_text(series_inventory(n))
            lab = Lab(folder / "lab", inventory=inventory)
            lab.prepare()
            lab.start()
            try:
                for point in asyncio.run(
                    _points(lab.root, n, senders, payloads, budget=budget, progress=progress)
                ):
                    points.append(_with_ratios(point, baselines))
            finally:
                lab.stop()
    report["points"] = points
    report["machine"]["load_average_end"] = list(os.getloadavg())
    report["seconds"] = time.perf_counter() - started
    return report


def format_series_table(report: dict[str, Any]) -> str:
    """One row per point; ratios in percent of the same-payload baselines; load = 1-minute load average."""
    head = ("offices", "senders", "payload", "accepted", "delivered", "acc/s", "dlv/s", "MiB/s",
            "p50 ms", "p99 ms", "%echo", "%pub-sub", "%JetStream", "load")  # fmt: skip
    rows = [head]
    for p in report["points"]:
        r = p["ratios"]
        rows.append((
            str(p["offices"]), str(p["senders"]), size_label(p["payload_bytes"]),
            str(p["accepted"]), str(p["delivered"]) + (f" ({p['errors']} err)" if p["errors"] else ""),
            f"{p['accepted_per_s']:.1f}", f"{p['delivered_per_s']:.1f}", f"{p['delivered_mib_per_s']:.2f}",
            f"{p['latency_ms_p50']:.0f}", f"{p['latency_ms_p99']:.0f}",
            f"{100 * r['delivered_vs_grpc_echo']:.2f}", f"{100 * r['delivered_vs_nats_pubsub']:.2f}",
            f"{100 * r['delivered_vs_jetstream']:.2f}", f"{p['load_average_1m']:.1f}",
        ))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    base = [
        f"{size_label(int(size))}: grpc echo "
        + ", ".join(f"{c}x {v:.0f}/s" for c, v in b["grpc_echo_calls_per_s"].items())
        + f"; nats pub->sub {b['core_pubsub_msgs_per_s']:.0f}/s; JetStream pipelined"
        f" {b['js_pipelined_msgs_per_s']:.0f}/s, one at a time {b['js_sequential_msgs_per_s']:.0f}/s"
        for size, b in report["baselines"].items()
    ]
    return "\n".join(["baselines (same run):", *("  " + line for line in base), "", *lines])
