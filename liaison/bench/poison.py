"""What a flood of poison frames from one office does to another office's delivery latency.

One lab, one run, three phases of the same honest traffic (one office sends
case messages to another, Send → recipient delivery timed per message):
``before`` (quiet), ``flood`` (while a third office, with its own NATS
identity, publishes poison frames on its out subject as fast as it can) and
``after``. The poison is what an office can put on its own subject: an
envelope whose case id (5000 characters) and recipients (1000) are over
their bounds, and bytes that do not parse. The gateway refuses and audits
each one (and signs a rejection for the parseable ones). Reported: p50/p99
latency per phase, poison frames published, audit records added.

What it does not: judge the numbers (``liaison bench poison`` prints them).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from exchange.client.sdk import AsyncClient
from exchange.core.codec.envelope import encode_frame, encode_header, encode_header_context
from exchange.core.envelope import ENVELOPE_VERSION, Envelope, Header, HeaderContext, Signature
from exchange.core.ids import new_message_id
from exchange.core.model import Algorithm, Handling, Kind, Priority, Suite
from exchange.core.wire import out_subject
from exchange.nats.transport import connect
from gateway.client import AuditClient
from liaison.bench.exchange import percentile
from liaison.lab.lab import DEFAULT_INVENTORY, Lab

__all__ = ["poison_frames", "run_poison"]

POISONER, SENDER, RECIPIENT = "ru-mvd-dushanbe", "tj-migration-moscow", "tj-mvd-moscow"
FLOOD_PUBLISHERS = 8


def poison_frames(sender: str) -> list[bytes]:
    """Frames an office can publish on its own subject that the gateway must refuse and audit."""
    now = int(time.time() * 1000)
    ctx = HeaderContext(
        version=ENVELOPE_VERSION,
        message_id=new_message_id(now),
        sender=sender,
        recipients=tuple(f"{i:04d}-poison" for i in range(1000)),
        kind=Kind.CASE_MESSAGE,
        priority=Priority.ROUTINE,
        case_id="C" * 5000,
        in_reply_to="",
        created_ms=now,
        expires_ms=now + 3_600_000,
        handling=Handling.OFFICIAL,
        suite=Suite.CLASSIC,
        signing_key_ids=("k",),
        body_size=1,
    )
    header = Header(ctx, encode_header_context(ctx), b"\0" * 32, ())
    signature = Signature("k", Algorithm.ED25519, b"\0" * 64)
    envelope = encode_frame(Envelope(header, encode_header(header), (signature,), b"x"))
    return [envelope, b"\xff" + os.urandom(512)]


async def _honest(lab: Lab, count: int, rate: float) -> list[float]:
    """Send → delivery latencies (ms) of ``count`` case messages from SENDER to RECIPIENT.

    Paced at ``rate`` messages per second (an open loop well below capacity), so a
    latency is one message's, not a queue's built by the benchmark itself.
    """
    sender = AsyncClient.from_lab(lab.root, SENDER)
    recipient = AsyncClient.from_lab(lab.root, RECIPIENT)
    sent_at: dict[str, float] = {}
    delivered_at: dict[str, float] = {}
    done = asyncio.Event()

    async def receive() -> None:
        async for d in recipient.subscribe(0):
            delivered_at.setdefault(d.message_id, time.perf_counter())
            await recipient.ack(d.message_id)
            if len(sent_at) == count and set(sent_at) <= set(delivered_at):
                done.set()

    receiver = asyncio.create_task(receive())

    async def one() -> None:
        t0 = time.perf_counter()
        result = await sender.send_case_message([RECIPIENT], case_id="BENCH-POISON", text="x" * 256)
        sent_at[result.message_id] = t0

    try:
        sends = []
        for _ in range(count):
            sends.append(asyncio.create_task(one()))
            await asyncio.sleep(1 / rate)
        await asyncio.gather(*sends)
        await asyncio.wait_for(done.wait(), timeout=max(120.0, count / 10))
    finally:
        receiver.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await receiver
        await sender.close()
        await recipient.close()
    return [(delivered_at[m] - t) * 1000 for m, t in sent_at.items()]


async def _flood(lab: Lab, stop: asyncio.Event) -> int:
    """Publish poison frames on POISONER's out subject until ``stop``; returns how many."""
    frames = poison_frames(POISONER)
    transport = await connect(lab.nats_servers(POISONER), "bench-poisoner", **lab.nats_connect_args(POISONER))
    published = 0

    async def publisher(n: int) -> None:
        nonlocal published
        i = 0
        while not stop.is_set():
            frame = frames[i % len(frames)]
            await transport.publish(out_subject(POISONER), frame, f"poison-{n}-{i}-{time.time_ns()}", 1)
            published += 1
            i += 1

    try:
        await asyncio.gather(*(publisher(n) for n in range(FLOOD_PUBLISHERS)))
    finally:
        await transport.close()
    return published


async def _phase_with_flood(lab: Lab, count: int, rate: float) -> tuple[list[float], int]:
    stop = asyncio.Event()
    flood = asyncio.create_task(_flood(lab, stop))
    await asyncio.sleep(1.0)  # the flood is under way before the first honest message
    try:
        latencies = await _honest(lab, count, rate)
    finally:
        stop.set()
    return latencies, await flood


def _summary(latencies: list[float]) -> dict[str, float]:
    return {
        "messages": len(latencies),
        "latency_ms_p50": statistics.median(latencies),
        "latency_ms_p99": percentile(latencies, 0.99),
    }


def run_poison(
    *, count: int = 300, rate: float = 20.0, inventory: Path | None = None, lab_dir: Path | None = None
) -> dict[str, Any]:
    """The three phases in one lab (started and stopped here); ``rate``: honest messages per second.

    ``inventory``: the lab's (default: the built-in lab); its ``[limits] sender_rate_per_s``
    is the gateway's per-office admission, which the flood meets.
    """
    with tempfile.TemporaryDirectory(prefix="liaison-bench-poison-") as tmp:
        lab = Lab(lab_dir or Path(tmp), inventory=inventory or DEFAULT_INVENTORY)
        lab.start()
        try:
            asyncio.run(_honest(lab, min(50, count), rate))  # warm-up
            before = asyncio.run(_honest(lab, count, rate))
            with AuditClient.from_lab(lab.root) as audit:
                rejected_before = _rejected(audit)
                flood_started = time.perf_counter()
                during, published = asyncio.run(_phase_with_flood(lab, count, rate))
                flood_s = time.perf_counter() - flood_started
                # Every poison frame ends as an audited rejection (bounded wait): none lost, none stuck.
                drained = time.perf_counter()
                deadline = drained + max(120.0, published / 50)
                while _rejected(audit) - rejected_before < published and time.perf_counter() < deadline:
                    time.sleep(0.5)
                audited = _rejected(audit) - rejected_before
                drain_s = time.perf_counter() - drained
            after = asyncio.run(_honest(lab, count, rate))
        finally:
            lab.stop()
    return {
        "honest_rate_per_s": rate,
        "before": _summary(before),
        "flood": {
            **_summary(during),
            "poison_frames_published": published,
            "poison_frames_per_s": published / flood_s,
            "poison_frames_audited_as_rejected": audited,
            "backlog_drained_s_after_flood": drain_s,
        },
        "after": _summary(after),
    }


def _rejected(audit: AuditClient) -> int:
    return sum(r.count for r in audit.stats() if r.sender == POISONER and r.verdict == "rejected")
