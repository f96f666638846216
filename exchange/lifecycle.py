"""Start-up helpers shared by the node processes: signals, directory, TLS files.

``stop_on_signals`` turns SIGTERM/SIGINT into an event so a node shuts down
cleanly (gRPC grace period, NATS drain, store closed). ``load_directory``
opens the node's pinned signed directory and, when the node's store holds a
newer one that verifies against it, that one.
"""

from __future__ import annotations

import asyncio
import signal
import ssl
from pathlib import Path

from exchange.config import NatsConfig
from exchange.directory import DirectoryState, SignedDirectory, TrustAnchor
from exchange.errors import ConfigError, LiaisonError

__all__ = ["load_directory", "nats_tls", "stop_on_signals"]


def stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


def load_directory(pinned: Path, stored: bytes | None = None) -> DirectoryState:
    """The directory state from the pinned file, moved forward to ``stored`` if that verifies."""
    try:
        genesis = pinned.read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read directory {pinned}: {e.strerror}") from e
    anchor = TrustAnchor.from_directory(SignedDirectory.from_bytes(genesis).directory)
    state = DirectoryState(anchor)
    state.apply(genesis)
    if stored is not None:
        try:
            if SignedDirectory.from_bytes(stored).version > state.directory.version:
                state.apply(stored)
        except LiaisonError:
            pass  # a stored directory that no longer verifies is ignored; the pinned one stands
    return state


def nats_tls(cfg: NatsConfig) -> ssl.SSLContext | None:
    if cfg.ca is None:
        return None
    ctx = ssl.create_default_context(cafile=str(cfg.ca))
    if cfg.cert and cfg.key:
        ctx.load_cert_chain(str(cfg.cert), str(cfg.key))
    return ctx
