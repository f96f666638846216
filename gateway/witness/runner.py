"""The witness loop: follow the gateway's tree heads, check them, co-sign, keep state.

I/O shell around :func:`gateway.witness.checks.check_new_head`. Each round fetches
the gateway's current signed head, fetches the consistency proof from the
last co-signed size when the log grew, runs the check, co-signs the exact
head bytes with the witness's Ed25519 authority key, and persists the new
state atomically. A :class:`~gateway.witness.checks.WitnessAlarm` is written to the
state file and logged as ``witness_alarm`` (error level, repeated while it
stands); from then on the witness refuses to co-sign until an operator
clears it (``liaison witness clear``). The state file is re-read every round,
so a clear takes effect without a restart. An unreachable gateway is logged
and retried with a bounded back-off.

What it does not: decide whether a head is acceptable (the pure core does),
open keystores or write files (the process wiring in :mod:`liaison.serve.witness`
opens the witness's key, writes the state file and is given to :class:`Witness`
as ``save_state``), or hold any key other than the witness's own.
"""

from __future__ import annotations

import base64
import binascii
import json
import random
import threading
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

import structlog

from exchange.client.connection import ClientTls
from exchange.core.clock import Clock, now_ms
from exchange.core.directory import DirectoryState, SignedDirectory, verify_directory
from exchange.core.errors import ConfigError, LiaisonError, NotFoundError, RemoteError
from exchange.core.identity import IdentityKey
from exchange.core.model import check_id
from gateway.audit.codec import encode_signed_tree_head
from gateway.audit.treehead import SignedTreeHead, sign_cosignature
from gateway.client import AuditClient
from gateway.witness.checks import (
    DEFAULT_TIMESTAMP_TOLERANCE_MS,
    MAX_HEAD_AGE_MS,
    MAX_HEAD_FUTURE_MS,
    MissingRecordError,
    Pin,
    WitnessAlarm,
    WitnessError,
    WitnessState,
    check_new_head,
    check_record,
)
from gateway.witness.metrics import WitnessMetrics

__all__ = [
    "Alarm",
    "SaveState",
    "StateFile",
    "Witness",
    "WitnessConfig",
    "load_state",
    "load_witness_config",
    "run_witness",
]

log = structlog.get_logger()

STATE_FORMAT: Final = "liaison-witness-state-v1"
MAX_STATE_BYTES: Final = 1024 * 1024
ALARM_REPEAT_S: Final = 60.0  # how often a standing alarm is logged again
DIRECTORY_REFRESH_S: Final = 60.0
MAX_BACKOFF_S: Final = 30.0
DEFAULT_STALL_AFTER_S: Final = 300.0
_UNREACHABLE: Final = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED"})


# --- configuration -----------------------------------------------------------------------


@dataclass(frozen=True)
class WitnessConfig:
    witness: str  # the authority id the witness signs as
    state: Path
    keys_dir: Path
    passphrase_file: Path | None
    endpoint: str
    directory: Path
    interval_s: float = 2.0
    timeout_s: float = 10.0
    tolerance_ms: int = DEFAULT_TIMESTAMP_TOLERANCE_MS
    tls: ClientTls | None = None
    sample: int = 16  # older records re-checked each round, besides every new one
    # Stalled: the log has been ahead of the co-signed head for longer than this.
    stall_after_s: float = DEFAULT_STALL_AFTER_S
    metrics: tuple[str, int] | None = None  # [metrics] host and port of /metrics (None: not served)
    pin: Pin | None = None  # the operator-confirmed head the first co-signed head must extend
    max_future_ms: int = MAX_HEAD_FUTURE_MS
    max_age_ms: int = MAX_HEAD_AGE_MS


def _table(path: Path, data: dict[str, Any], name: str, *, required: bool = True) -> dict[str, Any]:
    value = data.get(name, None if required else {})
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: section [{name}] is missing")
    return value


def _text(path: Path, table: dict[str, Any], where: str, key: str, default: str | None = None) -> str:
    value = table.get(key, default)
    if value is None:
        raise ConfigError(f"{path}: [{where}] {key} is missing")
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{path}: [{where}] {key} must be a non-empty string")
    return value


def _number(path: Path, table: dict[str, Any], where: str, key: str, default: float) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(f"{path}: [{where}] {key} must be a positive number")
    return float(value)


def load_witness_config(path: Path) -> WitnessConfig:
    """Parse a witness config (TOML); relative paths are resolved against its folder."""
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from e
    base = path.resolve().parent
    w = _table(path, data, "witness")
    keys = _table(path, data, "keys")
    gw = _table(path, data, "gateway")
    d = _table(path, data, "directory")
    try:
        witness = check_id(_text(path, w, "witness", "id"), "witness")
    except ValueError as e:
        raise ConfigError(f"{path}: [witness] id: {e}") from None
    tls = None
    if "tls" in data:
        t = _table(path, data, "tls")
        tls = ClientTls(
            ca=base / _text(path, t, "tls", "ca"),
            cert=base / _text(path, t, "tls", "cert"),
            key=base / _text(path, t, "tls", "key"),
        )
    passphrase = keys.get("passphrase_file")
    metrics = None
    if "metrics" in data:
        m = _table(path, data, "metrics")
        port = m.get("port")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ConfigError(f"{path}: [metrics] port must be an integer 0..65535")
        metrics = (_text(path, m, "metrics", "host", "127.0.0.1"), port)
    pin = None
    if "pin" in w:
        try:
            pin = Pin.parse(_text(path, w, "witness", "pin"))
        except ValueError as e:
            raise ConfigError(f"{path}: [witness] pin: {e}") from None
    return WitnessConfig(
        pin=pin,
        max_future_ms=int(_number(path, w, "witness", "max_future_s", MAX_HEAD_FUTURE_MS / 1000) * 1000),
        max_age_ms=int(_number(path, w, "witness", "max_age_s", MAX_HEAD_AGE_MS / 1000) * 1000),
        witness=witness,
        state=base / _text(path, w, "witness", "state", "witness.json"),
        interval_s=_number(path, w, "witness", "interval_s", 2.0),
        timeout_s=_number(path, w, "witness", "timeout_s", 10.0),
        tolerance_ms=int(_number(path, w, "witness", "timestamp_tolerance_s", 60.0) * 1000),
        sample=int(_number(path, w, "witness", "sample", 16.0)),
        stall_after_s=_number(path, w, "witness", "stall_after_s", DEFAULT_STALL_AFTER_S),
        metrics=metrics,
        keys_dir=base / _text(path, keys, "keys", "dir"),
        passphrase_file=base / _text(path, keys, "keys", "passphrase_file") if passphrase else None,
        endpoint=_text(path, gw, "gateway", "endpoint"),
        directory=base / _text(path, d, "directory", "file"),
        tls=tls,
    )


# --- the state file ----------------------------------------------------------------------


@dataclass(frozen=True)
class Alarm:
    """A standing alarm: what the gateway signed that contradicts the co-signed head."""

    kind: str
    reason: str
    raised_at_ms: int
    size: int
    root: bytes
    timestamp_ms: int
    head: bytes = field(repr=False)  # the offending signed tree head, as the gateway served it


@dataclass(frozen=True)
class StateFile:
    witness: str
    last: WitnessState | None = None  # the last head co-signed
    cosigned_at_ms: int | None = None
    last_head: bytes = field(default=b"", repr=False)  # that head, signed, as evidence
    alarm: Alarm | None = None
    # When the witness first saw the log beyond its co-signed head (None: not behind).
    behind_since_ms: int | None = None
    behind_size: int = 0  # the size it saw then

    def stalled_for_ms(self, now_ms: int, stall_after_s: float) -> int | None:
        """How long the log has been ahead of the co-signed head, once past ``stall_after_s``."""
        if self.behind_since_ms is None:
            return None
        behind = now_ms - self.behind_since_ms
        return behind if behind > stall_after_s * 1000 else None

    def to_json(self) -> dict[str, Any]:
        last = None
        if self.last is not None:
            last = {
                "gateway": self.last.gateway,
                "size": self.last.size,
                "root": self.last.root.hex(),
                "timestamp_ms": self.last.timestamp_ms,
                "cosigned_at_ms": self.cosigned_at_ms,
                "head": base64.b64encode(self.last_head).decode(),
            }
        alarm = None
        if self.alarm is not None:
            a = self.alarm
            alarm = {
                "kind": a.kind,
                "reason": a.reason,
                "raised_at_ms": a.raised_at_ms,
                "size": a.size,
                "root": a.root.hex(),
                "timestamp_ms": a.timestamp_ms,
                "head": base64.b64encode(a.head).decode(),
            }
        behind = None
        if self.behind_since_ms is not None:
            behind = {"since_ms": self.behind_since_ms, "size": self.behind_size}
        return {
            "format": STATE_FORMAT,
            "witness": self.witness,
            "last": last,
            "alarm": alarm,
            "behind": behind,
        }

    def to_bytes(self) -> bytes:
        """The state file's content (JSON, indented, newline-terminated)."""
        return (json.dumps(self.to_json(), indent=2) + "\n").encode()


SaveState = Callable[[Path, StateFile], None]
"""Writes the state file atomically (:func:`liaison.serve.witness.save_state`)."""


def _parse_state(doc: Any, witness: str) -> StateFile:
    if not isinstance(doc, dict) or doc.get("format") != STATE_FORMAT:
        raise ValueError(f"not a {STATE_FORMAT} file")
    if doc.get("witness") != witness:
        raise ValueError(f"belongs to witness {doc.get('witness')!r}, not {witness!r}")
    state = StateFile(witness)
    if (last := doc.get("last")) is not None:
        state = replace(
            state,
            last=WitnessState(
                gateway=str(last["gateway"]),
                size=int(last["size"]),
                root=bytes.fromhex(last["root"]),
                timestamp_ms=int(last["timestamp_ms"]),
            ),
            cosigned_at_ms=int(last["cosigned_at_ms"]) if last.get("cosigned_at_ms") is not None else None,
            last_head=base64.b64decode(last.get("head", ""), validate=True),
        )
    if (b := doc.get("behind")) is not None:  # absent in files written before it existed
        state = replace(state, behind_since_ms=int(b["since_ms"]), behind_size=int(b["size"]))
    if (a := doc.get("alarm")) is not None:
        state = replace(
            state,
            alarm=Alarm(
                kind=str(a["kind"]),
                reason=str(a["reason"]),
                raised_at_ms=int(a["raised_at_ms"]),
                size=int(a["size"]),
                root=bytes.fromhex(a["root"]),
                timestamp_ms=int(a["timestamp_ms"]),
                head=base64.b64decode(a.get("head", ""), validate=True),
            ),
        )
    return state


def load_state(path: Path, witness: str) -> StateFile:
    """The witness's state; an empty one when the file does not exist yet."""
    try:
        if path.stat().st_size > MAX_STATE_BYTES:
            raise ConfigError(f"witness state {path} is larger than {MAX_STATE_BYTES} bytes")
        doc = json.loads(path.read_bytes())
    except FileNotFoundError:
        return StateFile(witness)
    except OSError as e:
        raise ConfigError(f"cannot read witness state {path}: {e.strerror}") from e
    except ValueError as e:
        raise ConfigError(f"witness state {path} is not valid JSON") from e
    try:
        return _parse_state(doc, witness)
    except (KeyError, TypeError, ValueError, binascii.Error) as e:
        raise ConfigError(f"witness state {path} is malformed: {e}") from e


# --- the loop ----------------------------------------------------------------------------


class Witness:
    """One witness against one gateway; ``round()`` does one fetch-check-cosign cycle."""

    def __init__(
        self,
        cfg: WitnessConfig,
        client: AuditClient,
        directory: DirectoryState,
        key: IdentityKey,
        *,
        save_state: SaveState,
        save_directory: Callable[[SignedDirectory], None] = lambda _: None,
        clock: Clock = now_ms,
        metrics: WitnessMetrics | None = None,
    ) -> None:
        self.cfg, self.client, self.directory, self.key, self.clock = cfg, client, directory, key, clock
        self.metrics = metrics
        self._save_state = save_state
        self._save_directory = save_directory  # each directory adopted, so a restart keeps it
        self._directory_checked_ms = 0  # the first round asks the gateway for a newer directory
        self._rng = random.SystemRandom()  # which older records are re-checked: not predictable
        self._alarm_logged_ms: int | None = None

    def refresh_directory(self) -> None:
        """Adopt a newer directory from the gateway if it verifies against the current one."""
        self._directory_checked_ms = self.clock()
        data = self.client.directory()
        try:
            if SignedDirectory.from_bytes(data).version > self.directory.directory.version:
                signed = verify_directory(data, trusted=self.directory.directory, anchor=None)
                self._save_directory(signed)
                self.directory.apply(data)
                log.info("witness_directory_updated", version=signed.version)
        except LiaisonError as e:
            log.warning("witness_directory_refused", error=str(e))

    def round(self) -> None:
        """Fetch, check, co-sign, persist. Raises RemoteError when the gateway cannot be reached."""
        state = load_state(self.cfg.state, self.cfg.witness)
        if self.clock() - self._directory_checked_ms > DIRECTORY_REFRESH_S * 1000:
            self.refresh_directory()
        head = self.client.tree_head()
        state = self._note_growth(state, head)
        if state.alarm is not None:
            self._report(state.alarm, head)
            return
        self._alarm_logged_ms = None
        last = state.last
        proof: list[bytes] = []
        if (
            last is not None
            and head.tree_head.size > last.size > 0
            and head.tree_head.gateway == last.gateway
        ):
            proof = self.client.consistency_proof(last.size, head.tree_head.size)
        elif last is None and self.cfg.pin is not None and head.tree_head.size > self.cfg.pin.size > 0:
            proof = self.client.consistency_proof(self.cfg.pin.size, head.tree_head.size)
        try:
            new = check_new_head(
                last,
                head,
                proof,
                self.directory.directory,
                now_ms=self.clock(),
                pin=self.cfg.pin,
                tolerance_ms=self.cfg.tolerance_ms,
                max_future_ms=self.cfg.max_future_ms,
                max_age_ms=self.cfg.max_age_ms,
            )
        except WitnessAlarm as e:
            self._raise_alarm(e, head, state)
            return
        except WitnessError as e:
            log.warning("witness_refused", size=head.tree_head.size, error=str(e))
            self._directory_checked_ms = 0  # a rotated gateway key shows up in a newer directory
            return
        if new == last and any(c.witness == self.cfg.witness for c in head.cosignatures):
            return  # nothing new and already co-signed
        try:
            self._check_records(head, last.size if last is not None else 0)
        except WitnessAlarm as e:
            self._raise_alarm(e, head, state)
            return
        self.client.add_cosignature(new.size, sign_cosignature(head, self.cfg.witness, self.key.key))
        cosigned_state = StateFile(
            self.cfg.witness, new, self.clock(), encode_signed_tree_head(replace(head, cosignatures=()))
        )
        self._save_state(self.cfg.state, cosigned_state)
        if self.metrics is not None:
            self.metrics.observe(cosigned_state, self.clock(), self.cfg.stall_after_s)
        log.info("witness_cosigned", size=new.size, root=new.root.hex(), timestamp_ms=new.timestamp_ms)

    def _note_growth(self, state: StateFile, head: SignedTreeHead) -> StateFile:
        """Remember (once) when the log first went beyond the co-signed head: the stall clock.

        Written before any check, so a round that fails afterwards, for ever, still
        leaves the evidence that ``liaison witness status`` reports as a stall.
        """
        cosigned = state.last.size if state.last is not None else 0
        if head.tree_head.size <= cosigned or state.behind_since_ms is not None:
            if self.metrics is not None:
                self.metrics.observe(state, self.clock(), self.cfg.stall_after_s)
            return state
        state = replace(state, behind_since_ms=self.clock(), behind_size=head.tree_head.size)
        self._save_state(self.cfg.state, state)
        if self.metrics is not None:
            self.metrics.observe(state, self.clock(), self.cfg.stall_after_s)
        return state

    def _check_records(self, head: SignedTreeHead, cosigned: int) -> None:
        """The records behind the head are the ones its tree was built from.

        Every record added since the last co-signed size, and a random sample of
        older ones, must be served and prove into the signed root: stops a gateway
        that serves edited or deleted records while keeping the tree's hashes.
        """
        n = head.tree_head.size
        older = range(cosigned)
        indices = sorted({*range(cosigned, n), *self._rng.sample(older, min(len(older), self.cfg.sample))})
        for index in indices:
            try:
                record = self.client.record(index)
            except NotFoundError as e:
                raise MissingRecordError(f"record {index} of a signed log of size {n} is missing: {e}") from e
            except RemoteError as e:
                if e.status != "NOT_FOUND":
                    raise
                raise MissingRecordError(f"record {index} of a signed log of size {n} is missing: {e}") from e
            proof, _ = self.client.inclusion_proof(index, n)
            check_record(index, record.entry, head, proof)

    def _raise_alarm(self, e: WitnessAlarm, head: SignedTreeHead, state: StateFile) -> None:
        """Keep the alarm (with the offending head) in the state file, then report it."""
        h = head.tree_head
        alarm = Alarm(
            e.kind, str(e), self.clock(), h.size, h.root, h.timestamp_ms, encode_signed_tree_head(head)
        )
        self._save_state(self.cfg.state, replace(state, alarm=alarm))
        self._report(alarm, head)

    def _report(self, alarm: Alarm, head: SignedTreeHead) -> None:
        now = self.clock()
        if self._alarm_logged_ms is not None and now - self._alarm_logged_ms < ALARM_REPEAT_S * 1000:
            return
        self._alarm_logged_ms = now
        log.error(
            "witness_alarm",
            kind=alarm.kind,
            reason=alarm.reason,
            alarm_size=alarm.size,
            alarm_root=alarm.root.hex(),
            raised_at_ms=alarm.raised_at_ms,
            current_size=head.tree_head.size,
            action="refusing to co-sign until `liaison witness clear`",
        )


def run_witness(witness: Witness, stop: threading.Event) -> None:
    """Run rounds every ``interval_s`` until ``stop``; an unreachable gateway backs off (bounded)."""
    cfg = witness.cfg
    log.info("witness_started", witness=cfg.witness, gateway=cfg.endpoint, interval_s=cfg.interval_s)
    backoff_cap = min(MAX_BACKOFF_S, 10 * cfg.interval_s)
    failures = 0
    while not stop.is_set():
        try:
            witness.round()
            if failures:
                log.info("witness_gateway_reachable", after_failures=failures)
            failures = 0
        except RemoteError as e:
            failures += 1
            if e.status in _UNREACHABLE:
                log.warning("witness_gateway_unreachable", status=e.status, failures=failures)
            else:
                log.warning("witness_gateway_error", error=str(e), failures=failures)
        except LiaisonError as e:  # a malformed answer or an unwritable state file: report, go on
            log.error("witness_round_failed", error=str(e))  # noqa: TRY400 - one line, no traceback
        wait = cfg.interval_s * 2 ** min(failures - 1, 10) if failures else cfg.interval_s
        stop.wait(min(wait, max(cfg.interval_s, backoff_cap)))
    log.info("witness_stopped", witness=cfg.witness)
