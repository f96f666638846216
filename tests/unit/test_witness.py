"""The witness's pure check: accepted heads, alarms and refusals, as tables with readable ids.

Heads are signed with a real gateway identity over real RFC 9162 trees
(``MemoryTree``); proofs come from the same tree code the gateway uses. No I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Final

import pytest

from exchange.core.identity import OfficeIdentity, generate
from exchange.core.model import Directory, Gateway, Suite
from gateway.audit.codec import encode_tree_head
from gateway.audit.errors import AuditError
from gateway.audit.merkle import EMPTY_ROOT
from gateway.audit.tree import MemoryTree, consistency_proof, root_at
from gateway.audit.treehead import SignedTreeHead, TreeHead, sign_tree_head
from gateway.witness.checks import (
    MAX_HEAD_AGE_MS,
    MAX_HEAD_FUTURE_MS,
    ForkError,
    FutureHeadError,
    InconsistentHistoryError,
    OldHeadError,
    Pin,
    StaleHeadError,
    TruncationError,
    UnexpectedGatewayError,
    UnpinnedError,
    UnverifiedHeadError,
    WitnessAlarm,
    WitnessError,
    WitnessState,
    check_new_head,
)

NOW: Final = 1_760_000_000_000
GW: Final = "embassy-gateway"
GW_IDENTITY: Final = generate(GW, NOW - 1000)
OTHER_GW_IDENTITY: Final = generate("other-gateway", NOW - 1000)
STRANGER: Final = generate(GW, NOW - 1000)  # same name, keys not in the directory
DIRECTORY: Final = Directory(
    deployment="test",
    version=1,
    issued_ms=NOW - 86_400_000,
    offices=(),
    gateways=(
        Gateway(id=GW, keys=GW_IDENTITY.public_keys()),
        Gateway(id="other-gateway", keys=OTHER_GW_IDENTITY.public_keys()),
    ),
    authorities=(),
    threshold=1,
)
COSIGNED_SIZE: Final = 8
T: Final = NOW  # timestamp of the co-signed head
CLOCK: Final = NOW + 10_000  # the witness's clock


def tree(entries: list[bytes]) -> MemoryTree:
    t = MemoryTree()
    t.append_entries(entries)
    return t


HONEST: Final = [f"record {i}".encode() for i in range(20)]
ALTERED: Final = [b"record 3 (rewritten)" if i == 3 else e for i, e in enumerate(HONEST)]
REGROWN: Final = HONEST[:5] + [f"regrown {i}".encode() for i in range(15)]
A, B, C = tree(HONEST), tree(ALTERED), tree(REGROWN)


def head(
    t: MemoryTree,
    size: int,
    ts: int,
    *,
    identity: OfficeIdentity = GW_IDENTITY,
    gateway: str = GW,
    root: bytes | None = None,
) -> SignedTreeHead:
    h = TreeHead(
        size=size, root=root if root is not None else root_at(size, t), timestamp_ms=ts, gateway=gateway
    )
    data = encode_tree_head(h)
    return SignedTreeHead(h, data, sign_tree_head(h, data, identity.signing_keys(Suite.HYBRID_PQ)))


COSIGNED: Final = WitnessState(gateway=GW, size=COSIGNED_SIZE, root=root_at(COSIGNED_SIZE, A), timestamp_ms=T)


@dataclass(frozen=True)
class Case:
    state: WitnessState | None
    head: SignedTreeHead
    proof: list[bytes]
    pin: Pin | None = None


def check(case: Case, **kwargs: int) -> WitnessState:
    return check_new_head(case.state, case.head, case.proof, DIRECTORY, now_ms=CLOCK, pin=case.pin, **kwargs)


PIN: Final = Pin(COSIGNED_SIZE, root_at(COSIGNED_SIZE, A))  # confirmed by the operator
EMPTY_PIN: Final = Pin(0, EMPTY_ROOT)


def first(t: MemoryTree, size: int, pin: Pin = PIN, ts: int = T) -> Case:
    """A first head (no state yet) of ``t`` at ``size``, proven from ``pin``."""
    proof = consistency_proof(pin.size, size, t) if 0 < pin.size < size else []
    return Case(None, head(t, size, ts), proof, pin)


def grow(t: MemoryTree, size: int, ts: int = T + 5000, frm: int = COSIGNED_SIZE) -> Case:
    return Case(COSIGNED, head(t, size, ts), consistency_proof(frm, size, t))


# --- heads the witness accepts -----------------------------------------------------------

ACCEPTED: dict[str, Callable[[], Case]] = {
    "first-head-extends-the-pin": lambda: first(A, 13),
    "first-head-is-the-pin": lambda: first(A, COSIGNED_SIZE),
    "first-head-pinned-at-the-empty-log": lambda: first(A, 5, EMPTY_PIN),
    "first-head-empty-tree": lambda: first(A, 0, EMPTY_PIN),
    "head-just-within-the-future-bound": lambda: grow(A, 13, ts=CLOCK + MAX_HEAD_FUTURE_MS),
    "old-head-already-cosigned": lambda: Case(
        replace(COSIGNED, timestamp_ms=CLOCK - MAX_HEAD_AGE_MS - 5),
        head(A, COSIGNED_SIZE, CLOCK - MAX_HEAD_AGE_MS - 5),
        [],
    ),
    "log-grew-with-valid-proof": lambda: grow(A, 13),
    "log-grew-by-one": lambda: grow(A, COSIGNED_SIZE + 1),
    "log-grew-to-power-of-two": lambda: grow(A, 16),
    "same-head-again": lambda: Case(COSIGNED, head(A, COSIGNED_SIZE, T), []),
    "same-size-re-signed-later": lambda: Case(COSIGNED, head(A, COSIGNED_SIZE, T + 1000), []),
    "grew-from-empty-tree-needs-no-proof": lambda: Case(
        WitnessState(GW, 0, EMPTY_ROOT, T), head(A, 13, T + 1), []
    ),
    "clock-stepped-back-within-tolerance": lambda: grow(A, 13, ts=T - 30_000),
}


@pytest.mark.parametrize("make", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_accepted_heads_become_the_new_state(make: Callable[[], Case]) -> None:
    case = make()
    new = check(case)
    assert new == WitnessState.of(case.head)


# --- alarms: signed evidence that the gateway rewrote its log ------------------------------

ALARMS: dict[str, tuple[Callable[[], Case], type[WitnessAlarm]]] = {
    "truncated-log": (lambda: Case(COSIGNED, head(A, 5, T + 1), []), TruncationError),
    "truncated-to-empty": (lambda: Case(COSIGNED, head(A, 0, T + 1), []), TruncationError),
    "truncated-by-one": (lambda: Case(COSIGNED, head(A, COSIGNED_SIZE - 1, T + 1), []), TruncationError),
    "fork-same-size-other-root": (lambda: Case(COSIGNED, head(B, COSIGNED_SIZE, T + 1), []), ForkError),
    "altered-record-then-grown": (lambda: grow(B, 13), InconsistentHistoryError),
    "altered-record-power-of-two": (lambda: grow(B, 16), InconsistentHistoryError),
    "truncated-and-regrown-past-cosigned": (lambda: grow(C, 13), InconsistentHistoryError),
    "honest-head-with-empty-proof": (
        lambda: Case(COSIGNED, head(A, 13, T + 1), []),
        InconsistentHistoryError,
    ),
    "proof-from-another-size": (lambda: grow(A, 13, frm=7), InconsistentHistoryError),
    "proof-with-a-flipped-hash": (
        lambda: replace(
            grow(A, 13),
            proof=[bytes([p[0] ^ 1]) + p[1:] if i == 0 else p for i, p in enumerate(grow(A, 13).proof)],
        ),
        InconsistentHistoryError,
    ),
    "proof-of-wrong-length-hash": (
        lambda: replace(grow(A, 13), proof=[b"\x00" * 31]),
        InconsistentHistoryError,
    ),
    "empty-tree-head-with-a-root": (
        lambda: Case(None, head(A, 0, T, root=root_at(1, A)), [], EMPTY_PIN),
        InconsistentHistoryError,
    ),
    "first-head-contradicts-the-pin": (lambda: first(B, COSIGNED_SIZE), ForkError),
    "first-head-does-not-extend-the-pin": (lambda: first(B, 13), InconsistentHistoryError),
    "first-head-smaller-than-the-pin": (lambda: first(A, 5), TruncationError),
    "back-dated-head": (lambda: grow(A, 13, ts=T - 61_000), StaleHeadError),
    "back-dated-same-head": (
        lambda: Case(COSIGNED, head(A, COSIGNED_SIZE, T - 3_600_000), []),
        StaleHeadError,
    ),
}


@pytest.mark.parametrize(("make", "alarm"), ALARMS.values(), ids=ALARMS.keys())
def test_rewritten_history_raises_the_precise_alarm(
    make: Callable[[], Case], alarm: type[WitnessAlarm]
) -> None:
    case = make()
    with pytest.raises(alarm) as info:
        check(case)
    assert isinstance(info.value, AuditError)
    assert info.value.kind == alarm.kind != WitnessAlarm.kind


# --- refusals: nothing proven against the gateway, so no alarm ---------------------------------


def _mismatched_fields() -> Case:
    signed = head(A, 13, T + 1)
    return Case(COSIGNED, replace(signed, tree_head=replace(signed.tree_head, size=20)), [])


REFUSALS: dict[str, tuple[Callable[[], Case], type[WitnessError]]] = {
    "signed-by-a-stranger": (
        lambda: Case(COSIGNED, head(A, 13, T + 1, identity=STRANGER), consistency_proof(8, 13, A)),
        UnverifiedHeadError,
    ),
    "stranger-claims-truncation": (
        lambda: Case(COSIGNED, head(A, 5, T + 1, identity=STRANGER), []),
        UnverifiedHeadError,
    ),
    "stranger-first-head": (
        lambda: Case(None, head(A, 5, T, identity=STRANGER), [], EMPTY_PIN),
        UnverifiedHeadError,
    ),
    "first-head-without-a-pin": (lambda: Case(None, head(A, 5, T), []), UnpinnedError),
    "first-head-empty-without-a-pin": (lambda: Case(None, head(A, 0, T), []), UnpinnedError),
    "head-from-the-future": (lambda: grow(A, 13, ts=CLOCK + MAX_HEAD_FUTURE_MS + 1), FutureHeadError),
    "first-head-from-the-future": (
        lambda: first(A, 13, ts=CLOCK + MAX_HEAD_FUTURE_MS + 1),
        FutureHeadError,
    ),
    "new-head-too-old": (
        lambda: Case(
            replace(COSIGNED, timestamp_ms=CLOCK - MAX_HEAD_AGE_MS - 10),
            head(A, 13, CLOCK - MAX_HEAD_AGE_MS - 5),
            consistency_proof(COSIGNED_SIZE, 13, A),
        ),
        OldHeadError,
    ),
    "first-head-too-old": (lambda: first(A, 13, ts=CLOCK - MAX_HEAD_AGE_MS - 1), OldHeadError),
    "unknown-gateway": (
        lambda: Case(COSIGNED, head(A, 13, T + 1, gateway="nobody-gateway"), []),
        UnverifiedHeadError,
    ),
    "fields-differ-from-signed-bytes": (_mismatched_fields, UnverifiedHeadError),
    "unsigned-head": (
        lambda: Case(COSIGNED, replace(head(A, 13, T + 1), signatures=()), []),
        UnverifiedHeadError,
    ),
    "head-of-another-gateways-log": (
        lambda: Case(COSIGNED, head(A, 5, T + 1, identity=OTHER_GW_IDENTITY, gateway="other-gateway"), []),
        UnexpectedGatewayError,
    ),
}


@pytest.mark.parametrize(("make", "error"), REFUSALS.values(), ids=REFUSALS.keys())
def test_unproven_heads_are_refused_without_alarm(
    make: Callable[[], Case], error: type[WitnessError]
) -> None:
    case = make()
    with pytest.raises(error) as info:
        check(case)
    assert not isinstance(info.value, WitnessAlarm)


def test_tolerance_is_a_parameter() -> None:
    case = grow(A, 13, ts=T - 2_000)
    check(case, tolerance_ms=5_000)
    with pytest.raises(StaleHeadError):
        check(case, tolerance_ms=1_000)


def test_a_chain_of_honest_heads_is_accepted_step_by_step() -> None:
    state: WitnessState | None = None
    for step, size in enumerate((0, 1, 2, 3, 7, 8, 9, 16, 17, 20)):
        proof = consistency_proof(state.size, size, A) if state and 0 < state.size < size else []
        state = check_new_head(state, head(A, size, T + step), proof, DIRECTORY, now_ms=CLOCK, pin=EMPTY_PIN)
        assert (state.size, state.root) == (size, root_at(size, A))


def test_messages_name_sizes_not_record_content() -> None:
    case = grow(B, 13)
    with pytest.raises(InconsistentHistoryError) as info:
        check(case)
    message = str(info.value)
    assert "13" in message
    assert str(COSIGNED_SIZE) in message
    assert "rewritten" not in message
    assert "record 3" not in message


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        pytest.param(f"8:{root_at(8, A).hex()}", True, id="size-and-root"),
        pytest.param(f"0:{EMPTY_ROOT.hex()}", True, id="the-empty-log"),
        pytest.param(f"0:{root_at(1, A).hex()}", False, id="empty-log-with-a-root"),
        pytest.param(f"{root_at(8, A).hex()}", False, id="root-only"),
        pytest.param(f"-1:{root_at(8, A).hex()}", False, id="negative-size"),
        pytest.param("8:abcd", False, id="short-root"),
        pytest.param(f"8:{'zz' * 32}", False, id="not-hex"),
    ],
)
def test_pins_parse_size_and_root(text: str, ok: bool) -> None:
    if ok:
        assert str(Pin.parse(text)) == text
    else:
        with pytest.raises(ValueError, match=r"pin|hex"):
            Pin.parse(text)
