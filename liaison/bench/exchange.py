"""End-to-end exchange benchmark against a lab, with raw baselines from the same run.

Drives C concurrent agency clients sending case messages of a given body
size from one office to another through the real lab (office node →
NATS → gateway → NATS → office node) and measures Send → recipient
delivery: throughput and latency percentiles. In the same run it measures
the raw baselines the figures are compared with: a grpc.aio unary echo at
the same concurrency (server in its own process), and nats-py publish→subscribe and JetStream
publish-with-ack of the same payload size.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc

from exchange.client.sdk import AsyncClient
from exchange.core.wire import MAX_GRPC_MESSAGE_BYTES
from liaison.bench.nats import baseline as nats_baseline
from liaison.lab.lab import DEFAULT_INVENTORY, Lab
from liaison.natsserver import free_port

__all__ = ["echo_rate", "echo_server", "grpc_echo_rate", "percentile", "run_exchange"]

SENDER, RECIPIENT = "ru-mvd-dushanbe", "tj-mvd-moscow"
_ECHO = "/liaison.bench.Echo/Echo"


def _ident(b: bytes) -> bytes:
    return b


def _serve_echo(port: int, ready: Any, stop: Any) -> None:
    """Child process: a bytes-in, bytes-out grpc.aio unary echo until ``stop`` is set."""

    async def main() -> None:
        async def echo(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
            return request

        server = grpc.aio.server()
        handler = grpc.unary_unary_rpc_method_handler(
            echo, request_deserializer=_ident, response_serializer=_ident
        )
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("liaison.bench.Echo", {"Echo": handler}),)
        )
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        ready.set()
        await asyncio.to_thread(stop.wait)
        await server.stop(None)

    asyncio.run(main())


@contextlib.asynccontextmanager
async def echo_server() -> AsyncIterator[str]:
    """A grpc.aio unary echo server in its own process for the block; yields its target."""
    context = multiprocessing.get_context("spawn")
    ready, stop = context.Event(), context.Event()
    port = free_port()
    server = context.Process(target=_serve_echo, args=(port, ready, stop), daemon=True)
    server.start()
    try:
        if not await asyncio.to_thread(ready.wait, 30):
            raise RuntimeError("the echo server did not start")
        yield f"127.0.0.1:{port}"
    finally:
        stop.set()
        await asyncio.to_thread(server.join, 10)
        if server.is_alive():
            server.kill()


async def echo_rate(target: str, payload_size: int, count: int, concurrency: int) -> float:
    """Calls per second of ``count`` unary echo calls to ``target``, ``concurrency`` at a time."""
    async with grpc.aio.insecure_channel(
        target,
        options=[
            ("grpc.max_receive_message_length", MAX_GRPC_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_GRPC_MESSAGE_BYTES),
        ],
    ) as channel:
        call = channel.unary_unary(_ECHO, request_serializer=_ident, response_deserializer=_ident)
        payload = b"x" * payload_size
        await call(payload)
        remaining = count

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                await call(payload)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return count / (time.perf_counter() - started)


async def grpc_echo_rate(payload_size: int, count: int, concurrency: int) -> float:
    """Calls per second of a grpc.aio unary echo on loopback, server in its own process."""
    async with echo_server() as target:
        return await echo_rate(target, payload_size, count, concurrency)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _drive(lab: Lab, count: int, concurrency: int, body_size: int) -> dict[str, Any]:
    sender = AsyncClient.from_lab(lab.root, SENDER)
    recipient = AsyncClient.from_lab(lab.root, RECIPIENT)
    sent_at: dict[str, float] = {}
    delivered_at: dict[str, float] = {}
    text = "x" * body_size
    done = asyncio.Event()

    async def receive() -> None:
        async for d in recipient.subscribe(0):
            delivered_at[d.message_id] = time.perf_counter()
            if len(delivered_at) >= count and set(sent_at) <= set(delivered_at):
                done.set()

    receiver = asyncio.create_task(receive())
    remaining = count

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            t0 = time.perf_counter()
            result = await sender.send_case_message([RECIPIENT], case_id="BENCH", text=text)
            sent_at[result.message_id] = t0

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    accepted = time.perf_counter()
    try:
        await asyncio.wait_for(done.wait(), timeout=max(120.0, count / 50))
    finally:
        receiver.cancel()
        await sender.close()
        await recipient.close()
    finished = max(delivered_at[m] for m in sent_at)
    latencies = [(delivered_at[m] - t) * 1000 for m, t in sent_at.items()]
    return {
        "messages": count,
        "concurrency": concurrency,
        "body_bytes": body_size,
        "accept_rate": count / (accepted - started),
        "e2e_rate": count / (finished - started),
        "latency_ms_p50": statistics.median(latencies),
        "latency_ms_p99": percentile(latencies, 0.99),
    }


def run_exchange(
    *, count: int = 2000, concurrency: int = 64, body_size: int = 1024, lab_dir: Path | None = None
) -> dict[str, Any]:
    """One measured run plus its baselines; starts (and stops) a lab unless ``lab_dir`` has one."""
    with tempfile.TemporaryDirectory(prefix="liaison-bench-") as tmp:
        lab = Lab(lab_dir or Path(tmp), inventory=DEFAULT_INVENTORY)
        lab.start()
        try:
            # Warm-up: connections, JIT-free Python caches, first SQLite pages.
            asyncio.run(_drive(lab, min(100, count), min(8, concurrency), body_size))
            exchange = asyncio.run(_drive(lab, count, concurrency, body_size))
        finally:
            lab.stop()
    echo = asyncio.run(grpc_echo_rate(body_size, max(count * 2, 5000), concurrency))
    nats = asyncio.run(nats_baseline(body_size, max(count * 2, 5000), concurrency))
    return {
        "exchange": exchange,
        "baseline": {"grpc_echo_calls_per_s": echo, **nats},
        "ratios": {
            "e2e_vs_grpc_echo": exchange["e2e_rate"] / echo,
            "e2e_vs_nats_pubsub": exchange["e2e_rate"] / float(nats["core_pubsub_msgs_per_s"]),
            "e2e_vs_jetstream_pipelined": exchange["e2e_rate"] / float(nats["js_pipelined_msgs_per_s"]),
        },
    }
