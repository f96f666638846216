"""The witness's check of a gateway's new signed tree head: pure, no I/O, no clock.

A witness is a directory authority (for instance the other country's
embassy) that follows the gateway's signed tree heads and co-signs a head
only after checking that it extends the last head it co-signed. Together
the two signatures mean that neither party alone can rewrite the log: a
gateway that forks, truncates or alters its history has to show the witness
a head that fails one of the steps of :func:`check_new_head`.

What it does: ``check_new_head`` runs the numbered steps, each marked with
the attack it stops, and returns the witness's next :class:`WitnessState`
or raises. :class:`WitnessAlarm` leaves are raised only on evidence the
gateway signed (a verified head, plus the gateway's own proof), so an alarm
is proof of misbehaviour, not of a network fault; the runner keeps it until
an operator clears it. Refusals that prove nothing about the gateway (a head
whose signature fails, a head from another gateway) are plain
:class:`WitnessError` and are retried.

What it does not: fetch heads or proofs, sign co-signatures, persist state or
read a clock (the time is passed in); :mod:`gateway.witness.runner` does that.
The first head is never trusted on first use: it must extend a :class:`Pin`
the operator confirmed (a head given on the command line or in the config).
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Final

from exchange.core.errors import LiaisonError
from exchange.core.model import Directory
from gateway.audit.codec import encode_tree_head
from gateway.audit.errors import AuditError
from gateway.audit.merkle import EMPTY_ROOT, leaf_hash, verify_consistency, verify_inclusion
from gateway.audit.treehead import SignedTreeHead

__all__ = [
    "DEFAULT_TIMESTAMP_TOLERANCE_MS",
    "MAX_HEAD_AGE_MS",
    "MAX_HEAD_FUTURE_MS",
    "AlteredRecordError",
    "ForkError",
    "FutureHeadError",
    "InconsistentHistoryError",
    "MissingRecordError",
    "OldHeadError",
    "Pin",
    "StaleHeadError",
    "TruncationError",
    "UnexpectedGatewayError",
    "UnpinnedError",
    "UnverifiedHeadError",
    "WitnessAlarm",
    "WitnessError",
    "WitnessState",
    "check_new_head",
    "check_record",
]

# Gateway clocks may step back a little (NTP); more than this is a replayed or back-dated head.
DEFAULT_TIMESTAMP_TOLERANCE_MS: Final = 60_000
# A new head dated after the witness's clock by more than this is refused (a pre-dated head).
MAX_HEAD_FUTURE_MS: Final = 60_000
# A new head older than this by the witness's clock is refused (a replayed or withheld head).
# Heads are signed when the log grows, so an idle log's head ages: the bound is generous.
MAX_HEAD_AGE_MS: Final = 7 * 24 * 3600 * 1000


class WitnessError(AuditError):
    """The witness refuses to co-sign this head (base of every witness error)."""

    grpc_status = "FAILED_PRECONDITION"


class UnverifiedHeadError(WitnessError):
    """The head's gateway signature does not verify; nothing is proven, so no alarm (retried)."""


class UnexpectedGatewayError(WitnessError):
    """The head comes from another gateway than the log this witness follows (retried)."""


class UnpinnedError(WitnessError):
    """No co-signed head yet and no operator-confirmed pin: the witness will not trust a first head."""


class FutureHeadError(WitnessError):
    """The head is dated after the witness's clock by more than the bound (refused, retried)."""


class OldHeadError(WitnessError):
    """A new head is dated before the witness's clock by more than the bound (refused, retried)."""


@dataclass(frozen=True)
class Pin:
    """A tree head (size, root) the operator confirmed out of band; the first head must extend it.

    ``Pin(0, EMPTY_ROOT)`` says "the log was empty when this witness started"
    (what ``liaison deploy render`` writes for a new deployment).
    """

    size: int
    root: bytes

    def __post_init__(self) -> None:
        if self.size < 0 or len(self.root) != 32:
            raise ValueError("a pin needs size >= 0 and a 32-byte root")
        if self.size == 0 and not hmac.compare_digest(self.root, EMPTY_ROOT):
            raise ValueError("a pin of size 0 must have the empty tree's root")

    @classmethod
    def parse(cls, text: str) -> Pin:
        """``SIZE:ROOTHEX`` (what ``liaison audit head`` prints as size and root)."""
        size, sep, root = text.strip().partition(":")
        if not sep or not size.isdigit() or len(root) != 64:
            raise ValueError(f"pin {text[:80]!r} is not SIZE:ROOT (a decimal size, a 64-digit hex root)")
        return cls(int(size), bytes.fromhex(root))

    def __str__(self) -> str:
        return f"{self.size}:{self.root.hex()}"


class WitnessAlarm(WitnessError):  # noqa: N818 - an alarm, not a mere error: the name says so
    """Signed evidence that the gateway rewrote its log; the witness stops co-signing."""

    kind: ClassVar[str] = "alarm"


class AlteredRecordError(WitnessAlarm):
    """A record the gateway serves does not prove into the signed tree (edited in place)."""

    kind = "altered-record"


class MissingRecordError(WitnessAlarm):
    """The gateway cannot produce a record below the size it signed (deleted)."""

    kind = "missing-record"


def check_record(index: int, entry: bytes, head: SignedTreeHead, proof: Sequence[bytes]) -> None:
    """The served record ``index`` hashes, through ``proof``, to the signed root of ``head``."""
    try:
        verify_inclusion(leaf_hash(entry), index, head.tree_head.size, proof, head.tree_head.root)
    except AuditError as e:
        raise AlteredRecordError(
            f"record {index} does not prove into the signed head of size {head.tree_head.size}: {e}"
        ) from e


class TruncationError(WitnessAlarm):
    """The signed log is smaller than a size the witness already co-signed."""

    kind = "truncation"


class ForkError(WitnessAlarm):
    """Two signed heads of the same size have different roots."""

    kind = "fork"


class InconsistentHistoryError(WitnessAlarm):
    """The larger head does not extend the co-signed one (altered, removed or inserted records)."""

    kind = "inconsistent-history"


class StaleHeadError(WitnessAlarm):
    """The head's timestamp is earlier than the co-signed one by more than the tolerance."""

    kind = "stale-head"


@dataclass(frozen=True)
class WitnessState:
    """The last head the witness accepted: which log, its size, root and signed time."""

    gateway: str
    size: int
    root: bytes
    timestamp_ms: int

    def __post_init__(self) -> None:
        if self.size < 0 or len(self.root) != 32:
            raise ValueError("witness state needs size >= 0 and a 32-byte root")

    @classmethod
    def of(cls, head: SignedTreeHead) -> WitnessState:
        h = head.tree_head
        return cls(gateway=h.gateway, size=h.size, root=h.root, timestamp_ms=h.timestamp_ms)


def check_new_head(
    state: WitnessState | None,
    new_head: SignedTreeHead,
    proof: Sequence[bytes],
    directory: Directory,
    *,
    now_ms: int,
    pin: Pin | None = None,
    tolerance_ms: int = DEFAULT_TIMESTAMP_TOLERANCE_MS,
    max_future_ms: int = MAX_HEAD_FUTURE_MS,
    max_age_ms: int = MAX_HEAD_AGE_MS,
) -> WitnessState:
    """Check ``new_head`` against the last accepted ``state``; return the next state or raise.

    ``state`` is None before the first head: then the head must extend ``pin``,
    the head the operator confirmed (no pin: refused). ``proof`` is the
    gateway's consistency proof from ``state.size`` (or ``pin.size``) to the
    new size; it is ignored when no proof is needed (same size, or growing
    from the empty tree). ``now_ms`` is the witness's clock.
    """
    head = new_head.tree_head

    # Step 1: the gateway's signature over the exact head bytes, and the fields
    # read below are those bytes. Stops forged heads (a man in the middle, a
    # stranger posing as the gateway) and fields that differ from what was
    # signed; only signed heads are evidence, so this is a refusal, not an alarm.
    try:
        new_head.verify(directory)
    except LiaisonError as e:
        raise UnverifiedHeadError(f"tree head of size {head.size} does not verify: {e}") from e
    if not hmac.compare_digest(encode_tree_head(head), new_head.tree_head_bytes):
        raise UnverifiedHeadError(f"tree head of size {head.size} differs from the bytes it signed")

    # Step 2: the empty tree has one root. Stops a size-0 head that hides entries.
    if head.size == 0 and not hmac.compare_digest(head.root, EMPTY_ROOT):
        raise InconsistentHistoryError("signed head of size 0 has a root other than the empty tree's")

    # Step 3: the head's time against the witness's own clock. Stops a pre-dated head
    # (that would make later honest heads look back-dated) and a replayed old head
    # passed off as current. An unchanged head already co-signed is not "new".
    unchanged = state is not None and (state.size, state.root) == (head.size, head.root)
    if head.timestamp_ms > now_ms + max_future_ms:
        raise FutureHeadError(
            f"tree head of size {head.size} is dated {head.timestamp_ms - now_ms} ms in the future "
            f"(bound {max_future_ms} ms)"
        )
    if not unchanged and head.timestamp_ms < now_ms - max_age_ms:
        raise OldHeadError(
            f"tree head of size {head.size} is {now_ms - head.timestamp_ms} ms old (bound {max_age_ms} ms)"
        )

    # Step 4: no trust on first use: the first head must extend the operator's pin.
    # Stops a witness that starts (or was reset) while the gateway shows it a forged history.
    first = state is None
    if state is None:
        if pin is None:
            raise UnpinnedError(
                f"no co-signed head and no pin: refusing to trust head {head.size}:{head.root.hex()} "
                "(confirm it with the other embassy, then set [witness] pin)"
            )
        state = WitnessState(gateway=head.gateway, size=pin.size, root=pin.root, timestamp_ms=0)
    held = "pinned" if first else "co-signed"

    # Step 5: the same log. Stops a second gateway's log being passed off as
    # the one co-signed so far (proves nothing against either: refusal).
    if head.gateway != state.gateway:
        raise UnexpectedGatewayError(
            f"head is from gateway {head.gateway!r}; this witness follows {state.gateway!r}"
        )

    # Step 6: the log never shrinks. Stops truncation (deleting the newest
    # records, e.g. to hide a message after the fact).
    if head.size < state.size:
        raise TruncationError(f"signed log shrank from {held} size {state.size} to {head.size}")

    # Step 7: one size, one root. Stops a fork (two views of the same log) and
    # a history rewritten without changing the size.
    if head.size == state.size:
        if not hmac.compare_digest(head.root, state.root):
            raise ForkError(
                f"signed head of size {head.size} has root {head.root.hex()[:16]}…, "
                f"{held} root is {state.root.hex()[:16]}…"
            )
    # Step 8: the new tree extends the co-signed one (RFC 9162 §2.1.4.2).
    # Stops altered, deleted, reordered or inserted records in the co-signed
    # prefix, including a log truncated and grown back past the co-signed size.
    elif state.size > 0:
        try:
            verify_consistency(state.size, head.size, proof, state.root, head.root)
        except AuditError as e:
            raise InconsistentHistoryError(
                f"signed head of size {head.size} does not extend {held} size {state.size}: {e}"
            ) from e

    # Step 9: time moves forward. Stops replaying or back-dating heads, which
    # would let the gateway claim a record was logged earlier than it was.
    if not first and head.timestamp_ms < state.timestamp_ms - tolerance_ms:
        raise StaleHeadError(
            f"signed head of size {head.size} is dated {state.timestamp_ms - head.timestamp_ms} ms "
            f"before the co-signed head (tolerance {tolerance_ms} ms)"
        )

    return WitnessState.of(new_head)
