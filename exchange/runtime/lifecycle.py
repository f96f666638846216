"""Start-up helpers shared by the node processes: signals, directory, TLS files.

``stop_on_signals`` turns SIGTERM/SIGINT into an event so a node shuts down
cleanly (gRPC grace period, NATS drain, store closed). ``load_directory``
opens the node's pinned signed directory and moves it forward through the
copies the node stored of every directory it accepted (newest valid wins).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import ssl
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from pathlib import Path
from typing import Any

import grpc
import structlog
from grpc_health.v1 import health

from exchange.core.codec.health import SERVING
from exchange.core.directory import DirectoryState, SignedDirectory, TrustAnchor
from exchange.core.errors import ConfigError, LiaisonError, map_exceptions
from exchange.nats.transport import Transport
from exchange.nats.version import check_nats_server_version
from exchange.runtime.config import NatsConfig

__all__ = ["load_directory", "nats_connect_args", "nats_tls", "run_node", "stop_on_signals"]

log = structlog.get_logger()


def stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


def load_directory(pinned: Path, stored: Iterable[bytes] = ()) -> DirectoryState:
    """The directory state from the pinned file, moved forward through the ``stored`` copies.

    Each stored copy newer than the state so far is applied in version order, so
    a node restarts from the newest directory it accepted before (an update that
    revoked a key stays in force) and a chain of rotated authorities still
    verifies step by step. A copy that does not verify is skipped and logged:
    the newest valid one stands, whichever of pinned and stored that is.
    """
    with map_exceptions({OSError: ConfigError}, f"cannot read directory {pinned}"):
        genesis = pinned.read_bytes()
    anchor = TrustAnchor.from_directory(SignedDirectory.from_bytes(genesis).directory)
    state = DirectoryState(anchor)
    state.apply(genesis)
    candidates = []
    for data in stored:
        try:
            candidates.append((SignedDirectory.from_bytes(data).version, data))
        except LiaisonError as e:
            log.warning("stored_directory_unreadable", error=str(e))
    for version, data in sorted(candidates, key=lambda c: c[0]):
        if version <= state.directory.version:
            continue
        try:
            state.apply(data)
        except LiaisonError as e:
            log.warning("stored_directory_refused", version=version, error=str(e))
    return state


def nats_tls(cfg: NatsConfig) -> ssl.SSLContext | None:
    """The client TLS context for NATS (CA to trust, and this node's certificate when given)."""
    if cfg.ca is None:
        return None
    # ssl.SSLError (a file that is not PEM, a key that does not match) is an OSError.
    with map_exceptions({OSError: ConfigError}, f"cannot load NATS TLS files ({cfg.ca}, {cfg.cert})"):
        ctx = ssl.create_default_context(cafile=str(cfg.ca))
        if cfg.cert and cfg.key:
            ctx.load_cert_chain(str(cfg.cert), str(cfg.key))
    return ctx


def nats_connect_args(cfg: NatsConfig) -> dict[str, Any]:
    """Keyword arguments for ``exchange.nats.transport.connect`` from a node's [nats] section."""
    return {
        "tls": nats_tls(cfg),
        "user": cfg.user or None,
        "password": cfg.password or None,
        "user_credentials": str(cfg.creds) if cfg.creds else None,
        "inbox_prefix": cfg.inbox_prefix or None,
        "domain": cfg.domain or None,
    }


def _check_nats_server(transport: Transport) -> None:
    """Fail closed: a server that does not enforce leaf-node permissions isolates nothing (INFO)."""
    nc = transport.nc
    where = f"nats-server at {nc.connected_url.netloc if nc.connected_url else '?'}"
    check_nats_server_version(str(nc._server_info.get("version")), where)


async def run_node(
    *,
    role: str,
    server: grpc.aio.Server,
    health_servicer: health.HealthServicer,
    services: Sequence[str],
    connect_nats: Callable[[], Awaitable[Transport]],
    run: Callable[[Transport], Coroutine[Any, Any, None]],
    ready: asyncio.Event,
    **fields: object,
) -> None:
    """Serve gRPC, run the node's NATS side, report SERVING once ready, stop cleanly.

    Returns on SIGTERM/SIGINT; re-raises if the node's own task fails. In
    every case the gRPC server gets its grace period and NATS is drained.
    """
    stop = stop_on_signals()
    await server.start()
    try:
        transport = await connect_nats()
        try:
            _check_nats_server(transport)
            running = asyncio.create_task(run(transport))
            became_ready = asyncio.create_task(ready.wait())
            stopped = asyncio.create_task(stop.wait())
            try:
                await asyncio.wait({running, became_ready, stopped}, return_when=asyncio.FIRST_COMPLETED)
                if became_ready.done() and not running.done() and not stopped.done():
                    for name in (*services, ""):
                        health_servicer.set(name, SERVING)
                    log.info(f"{role}_serving", **fields)
                    await asyncio.wait({running, stopped}, return_when=asyncio.FIRST_COMPLETED)
                if running.done():
                    running.result()  # the node's task ended on its own: surface why
            finally:
                log.info(f"{role}_stopping")
                for task in (became_ready, stopped, running):
                    task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await running
        finally:
            await transport.close()
    finally:
        await server.stop(grace=2.0)
