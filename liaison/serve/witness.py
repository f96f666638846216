"""The witness process: open its key, write its state file, run the loop until a signal.

Process wiring around :mod:`gateway.witness.runner` (the loop, the config and
the state parsing) for ``liaison witness serve``: loads the pinned directory,
opens the witness's Ed25519 authority key from its keystore, and gives the
loop the atomic, private state-file writer. What it does not: check heads
(:mod:`gateway.witness.checks`) or decide when to co-sign.
"""

from __future__ import annotations

import signal
import threading
from dataclasses import replace
from pathlib import Path

import structlog
from prometheus_client import start_http_server

from exchange.core.clock import now_ms
from exchange.core.directory import DirectoryState
from exchange.core.errors import ConfigError, KeystoreError
from exchange.core.identity import IdentityKey
from exchange.core.model import Algorithm
from exchange.runtime.dirstore import DirectoryFolder
from exchange.runtime.lifecycle import load_directory
from gateway.client import AuditClient
from gateway.witness.metrics import WitnessMetrics
from gateway.witness.runner import (
    StateFile,
    Witness,
    WitnessConfig,
    load_state,
    run_witness,
)
from keys.keystore import open_keystore, passphrase_from, write_private_file

__all__ = ["clear_alarm", "open_witness_key", "save_state", "serve_witness"]

log = structlog.get_logger()


def open_witness_key(cfg: WitnessConfig, directory: DirectoryState) -> IdentityKey:
    """The witness's Ed25519 authority key, checked against the directory's entry for it."""
    identity = open_keystore(cfg.keys_dir, passphrase_from(cfg.passphrase_file))
    if identity.owner_id != cfg.witness:
        raise ConfigError(f"keystore {cfg.keys_dir} belongs to {identity.owner_id}, not {cfg.witness}")
    key = identity.key(Algorithm.ED25519)
    authority = directory.directory.authority(cfg.witness)
    if authority is None:
        raise ConfigError(f"{cfg.witness} is not an authority of the directory; only authorities witness")
    if authority.key(key.key_id) is None:
        raise KeystoreError(f"the directory does not list {cfg.witness}'s Ed25519 key {key.key_id}")
    return key


def save_state(path: Path, state: StateFile) -> None:
    """Write the state atomically (temp file, fsync, rename): a crash leaves the old or the new."""
    try:
        write_private_file(path, state.to_bytes())
    except OSError as e:
        raise ConfigError(f"cannot write witness state {path}: {e.strerror}") from e


def clear_alarm(path: Path, witness: str, *, forget_head: bool = False) -> tuple[StateFile, Path | None]:
    """Remove a standing alarm (``forget_head``: also the co-signed head, so the next is TOFU).

    The state as it was (with the signed evidence) is kept next to it first;
    returns the new state and where the old one was kept (None if nothing changed).
    """
    state = load_state(path, witness)
    cleared = StateFile(witness) if forget_head else replace(state, alarm=None)
    if cleared == state:
        return state, None
    kept = path.with_name(f"{path.name}.{now_ms()}.cleared")
    write_private_file(kept, path.read_bytes())
    save_state(path, cleared)
    return cleared, kept


def serve_witness(cfg: WitnessConfig, stop: threading.Event | None = None) -> None:
    """Run the witness until SIGTERM/SIGINT (or ``stop``)."""
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    # The witness's state folder (beside its state file) keeps every directory it adopted.
    copies = DirectoryFolder(cfg.state.parent / "directories")
    directory = load_directory(cfg.directory, copies.stored())
    key = open_witness_key(cfg, directory)
    load_state(cfg.state, cfg.witness)  # a broken state file is a start-up error, not a loop
    metrics = WitnessMetrics(cfg.witness)
    if cfg.metrics is not None:
        host, port = cfg.metrics
        try:
            server, _ = start_http_server(port, addr=host, registry=metrics.registry)
        except OSError as e:
            raise ConfigError(f"metrics cannot listen on {host}:{port}: {e.strerror}") from None
        log.info("metrics_serving", host=host, port=server.server_port)
    with AuditClient(cfg.endpoint, tls=cfg.tls, timeout=cfg.timeout_s) as client:
        witness = Witness(
            cfg, client, directory, key, save_state=save_state, save_directory=copies.save, metrics=metrics
        )
        run_witness(witness, stop)
