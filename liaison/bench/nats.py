"""Baseline NATS throughput on this machine, on its own embedded nats-server.

``baseline()`` measures (1) plain NATS publish → subscribe msgs/s, (2) JetStream
publish-with-ack msgs/s pipelined through ``Transport.publish_many`` and (3) the same
one publish at a time, all on a fresh server with file storage and
``sync_interval: always``. It gives the ceiling the Liaison pipeline is compared
against; it does not measure sealing, verification or the audit log.
Run it with ``python -m liaison.bench.nats [payload_size] [count] [concurrency]``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from typing import Final

import nats
from nats.aio.msg import Msg

from exchange.core.errors import OversizeError
from exchange.core.wire import MAX_PAYLOAD_BYTES, out_subject
from exchange.nats.transport import OutboundMessage, connect
from liaison.natsserver import NatsServer

__all__ = ["baseline", "main"]

MAX_SEQUENTIAL: Final = 2000
_CORE_SUBJECT: Final = "bench.core"
_WAIT_S: Final = 120.0
# Bytes allowed in flight between publisher and subscriber: without a window a fast publisher
# makes the server cut the subscriber off as a slow consumer (its default max_pending is 64 MiB).
_CORE_WINDOW_BYTES: Final = 16 << 20


async def _core_rate(url: str, payload: bytes, count: int) -> float:
    sub_nc = await nats.connect(url, pending_size=64 << 20)
    pub_nc = await nats.connect(url, pending_size=64 << 20)
    try:
        done = asyncio.Event()
        progress = asyncio.Event()
        received = 0
        window = max(1, _CORE_WINDOW_BYTES // max(1, len(payload)))

        async def on_msg(_: Msg) -> None:
            nonlocal received
            received += 1
            progress.set()
            if received == count:
                done.set()

        await sub_nc.subscribe(_CORE_SUBJECT, cb=on_msg, pending_msgs_limit=count + 1, pending_bytes_limit=-1)
        await sub_nc.flush()
        start = time.perf_counter()
        for sent in range(count):
            while sent - received >= window:
                progress.clear()
                await pub_nc.flush()
                await asyncio.wait_for(progress.wait(), timeout=_WAIT_S)
            await pub_nc.publish(_CORE_SUBJECT, payload)
        await pub_nc.flush()
        await asyncio.wait_for(done.wait(), timeout=_WAIT_S)
        return count / (time.perf_counter() - start)
    finally:
        await pub_nc.close()
        await sub_nc.close()


async def baseline(payload_size: int, count: int, concurrency: int) -> dict[str, float | int]:
    """Measure msgs/s for core pub/sub and JetStream publish-with-ack (pipelined and sequential)."""
    if payload_size > MAX_PAYLOAD_BYTES:
        raise OversizeError(f"payload_size {payload_size} exceeds {MAX_PAYLOAD_BYTES}")
    payload = b"\xa5" * payload_size
    sequential_count = min(count, MAX_SEQUENTIAL)
    with tempfile.TemporaryDirectory(prefix="liaison-bench-") as store:
        async with NatsServer(store) as server:
            core = await _core_rate(server.url, payload, count)
            transport = await connect(server.url, "bench", request_timeout=30.0)
            try:
                await transport.ensure_streams()
                items = [OutboundMessage(out_subject("bench"), payload, f"p-{i}", 1) for i in range(count)]
                start = time.perf_counter()
                await transport.publish_many(items, concurrency=concurrency)
                pipelined = count / (time.perf_counter() - start)
                start = time.perf_counter()
                for i in range(sequential_count):
                    await transport.publish(out_subject("bench"), payload, f"s-{i}", 1)
                sequential = sequential_count / (time.perf_counter() - start)
            finally:
                await transport.close()
    return {
        "payload_size": payload_size,
        "count": count,
        "concurrency": concurrency,
        "core_pubsub_msgs_per_s": round(core, 1),
        "js_pipelined_msgs_per_s": round(pipelined, 1),
        "js_sequential_count": sequential_count,
        "js_sequential_msgs_per_s": round(sequential, 1),
    }


def main(argv: list[str] | None = None) -> int:
    args = [int(a) for a in (sys.argv[1:] if argv is None else argv)]
    payload_size, count, concurrency = (args + [1024, 10_000, 256][len(args) :])[:3]
    result = asyncio.run(baseline(payload_size, count, concurrency))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
