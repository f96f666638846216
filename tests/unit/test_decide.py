"""The gateway's decision (``gateway.decide``) as tables: one frame in, one decision out.

Each case builds one frame (an envelope or a receipt, valid or broken in one
way) and the look-up's answer (``Prior``, ``InFlight`` or None), and names the
decision and the error it must give. The audit record comes out whole, with
the frame's out-stream sequence.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from exchange.core import errors, primitives
from exchange.core.codec.envelope import encode_frame
from exchange.core.envelope import Envelope, Receipt, Rejection, Routed
from exchange.core.model import (
    Alert,
    AlertCategory,
    Directory,
    KeyStatus,
    Priority,
    Reason,
    ReceiptState,
    Suite,
)
from exchange.core.seal import seal, sign_statement
from gateway.audit.record import Verdict
from gateway.decide import (
    FRAME_OVERHEAD_BYTES,
    Accepted,
    Decision,
    Forward,
    InFlight,
    Prior,
    Refused,
    Resume,
    decide,
)
from tests.unit.conftest import OfficeKeys

NOW = 1_760_000_000_000
SENDER = "ru-mvd-dushanbe"
RECIPIENT = "tj-mvd-moscow"
THIRD = "tj-labour-moscow"
SEQ = 41
ALERT = Alert(category=AlertCategory.OTHER, priority=Priority.IMMEDIATE, subject="s", text="t")

Answer = Prior | InFlight | None


@dataclass(frozen=True)
class World:
    offices: dict[str, OfficeKeys]
    directory: Directory
    envelope: Envelope

    @property
    def message_id(self) -> str:
        return self.envelope.header.context.message_id

    @property
    def digest(self) -> bytes:
        return primitives.sha256(self.envelope.header_bytes)

    def prior(
        self, *, seq: int = SEQ, digest: bytes | None = None, recipients: tuple[str, ...] = (RECIPIENT,)
    ) -> Prior:
        return Prior(5, SENDER, recipients, self.digest if digest is None else digest, seq)

    def receipt(
        self,
        state: ReceiptState = ReceiptState.DELIVERED,
        *,
        signer: str = RECIPIENT,
        digest: bytes | None = None,
    ) -> bytes:
        r = Receipt(
            self.message_id,
            state,
            signer,
            NOW,
            self.digest if digest is None else digest,
            SENDER,
            recipient=signer,
        )
        return encode_frame(sign_statement(r, self.offices[signer].signing))


@pytest.fixture(scope="module")
def world(offices: dict[str, OfficeKeys], directory: Directory) -> World:
    envelope = seal(
        ALERT,
        sender=SENDER,
        sender_keys=offices[SENDER].signing,
        recipients=(RECIPIENT,),
        directory=directory,
        suite=Suite.CLASSIC,
        now_ms=NOW,
        ttl_s=3600,
    )
    return World(offices, directory, envelope)


@dataclass(frozen=True)
class Case:
    frame: Callable[[World], bytes]
    answer: Callable[[World], Answer]
    decision: type[Decision]
    error: type[errors.LiaisonError] | None = None
    from_office: str = SENDER


def _envelope(w: World) -> bytes:
    return encode_frame(w.envelope)


def _nothing(w: World) -> Answer:
    return None


def _routed(w: World) -> bytes:
    stamp = Receipt(w.message_id, ReceiptState.STAMPED, SENDER, NOW, w.digest, SENDER)
    return encode_frame(Routed(w.envelope, sign_statement(stamp, w.offices[SENDER].signing)))


def _rejection(w: World) -> bytes:
    r = Rejection(w.message_id, Reason.MALFORMED, "x", RECIPIENT, NOW, w.digest, SENDER)
    return encode_frame(sign_statement(r, w.offices[RECIPIENT].signing))


def _oversize(w: World) -> bytes:
    return b"\x00" * (w.directory.limits.max_envelope_bytes + FRAME_OVERHEAD_BYTES + 1)


CASES = {
    # envelopes
    "accepted": Case(_envelope, _nothing, Accepted),
    "redelivery-of-the-accepted-frame-resumes": Case(_envelope, lambda w: w.prior(), Resume),
    "replay-from-another-frame": Case(_envelope, lambda w: w.prior(seq=SEQ - 1), Refused, errors.ReplayError),
    "same-frame-other-header": Case(
        _envelope, lambda w: w.prior(digest=bytes(32)), Refused, errors.ReplayError
    ),
    "being-accepted-by-a-concurrent-handler": Case(
        _envelope, lambda w: InFlight(w.message_id), Refused, errors.ReplayError
    ),
    "came-from-another-office": Case(_envelope, _nothing, Refused, errors.SenderMismatchError, THIRD),
    "oversize-before-parsing": Case(_oversize, _nothing, Refused, errors.OversizeError),
    "garbage": Case(lambda w: b"\xff" * 40, _nothing, Refused, errors.CodecError),
    "offices-do-not-route": Case(_routed, _nothing, Refused, errors.CodecError),
    # receipts
    "delivered-receipt-forwarded": Case(lambda w: w.receipt(), lambda w: w.prior(), Forward, None, RECIPIENT),
    "read-receipt-forwarded": Case(
        lambda w: w.receipt(ReceiptState.READ), lambda w: w.prior(), Forward, None, RECIPIENT
    ),
    "offices-do-not-stamp": Case(
        lambda w: w.receipt(ReceiptState.STAMPED),
        lambda w: w.prior(),
        Refused,
        errors.SignatureError,
        RECIPIENT,
    ),
    "offices-do-not-reject": Case(_rejection, lambda w: w.prior(), Refused, errors.SignatureError, RECIPIENT),
    "receipt-signed-by-another-office": Case(
        lambda w: w.receipt(), lambda w: w.prior(), Refused, errors.SenderMismatchError, THIRD
    ),
    "receipt-for-unknown-message": Case(
        lambda w: w.receipt(), _nothing, Refused, errors.UnknownRecipientError, RECIPIENT
    ),
    "receipt-for-message-being-accepted": Case(
        lambda w: w.receipt(),
        lambda w: InFlight(w.message_id),
        Refused,
        errors.UnknownRecipientError,
        RECIPIENT,
    ),
    "receipt-by-a-non-recipient": Case(
        lambda w: w.receipt(signer=THIRD),
        lambda w: w.prior(),
        Refused,
        errors.UnknownRecipientError,
        THIRD,
    ),
    "receipt-for-another-header": Case(
        lambda w: w.receipt(digest=bytes(32)), lambda w: w.prior(), Refused, errors.SignatureError, RECIPIENT
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_decide(world: World, case: Case) -> None:
    answer = case.answer(world)
    asked: list[str] = []

    def lookup(message_id: str) -> Answer:
        asked.append(message_id)
        return answer

    decision = decide(
        case.frame(world),
        from_office=case.from_office,
        directory=world.directory,
        now_ms=NOW,
        prior=lookup,
        source_seq=SEQ,
    )
    assert type(decision) is case.decision
    if isinstance(decision, Refused):
        assert type(decision.error) is case.error, decision.error
        assert decision.notify == case.from_office
        # The record names the office the frame came from, never the sender it claims.
        assert decision.record.sender == case.from_office
        assert decision.record.verdict is Verdict.REJECTED
        assert decision.record.reason is case.error.reason if case.error else True
    else:
        assert case.error is None
    if isinstance(decision, Resume):
        assert decision.prior == answer
        return
    # The record is built whole: the frame's sequence and arrival are in it.
    assert decision.record.source_seq == SEQ
    assert decision.record.at_ms == NOW
    if isinstance(decision, Accepted):
        assert decision.record.verdict is Verdict.ACCEPTED
        assert decision.record.header_digest == world.digest
        assert asked == [world.message_id]
    if isinstance(decision, Forward):
        assert decision.record.verdict is Verdict.RECEIPT
        assert decision.to == SENDER
        assert decision.record.recipients == (SENDER,)


def test_without_a_sequence_a_prior_is_a_replay(world: World) -> None:
    """An unknown sequence (0) never resumes: only the very stream message may."""
    decision = decide(
        encode_frame(world.envelope),
        from_office=SENDER,
        directory=world.directory,
        now_ms=NOW,
        prior=lambda _: world.prior(seq=0),
        source_seq=0,
    )
    assert isinstance(decision, Refused)
    assert isinstance(decision.error, errors.ReplayError)
    assert decision.record.source_seq == 0


@pytest.mark.parametrize(
    ("stored_ms", "error"),
    [(0, None), (NOW + 9, None), (NOW + 10, errors.KeyRevokedError)],
    ids=["stored-unknown", "stored-before-revocation", "stored-at-revocation"],
)
def test_keys_are_judged_no_earlier_than_jetstream_stored_the_frame(
    world: World, stored_ms: int, error: type[errors.LiaisonError] | None
) -> None:
    """The sender's key revoked at NOW + 10; the envelope says it was created at NOW."""
    office = world.directory.office(SENDER)
    assert office is not None
    keys = tuple(
        dataclasses.replace(k, status=KeyStatus.REVOKED, revoked_at_ms=NOW + 10)
        if k.algorithm.is_signing
        else k
        for k in office.keys
    )
    revoked = dataclasses.replace(
        world.directory,
        offices=tuple(
            dataclasses.replace(o, keys=keys) if o.id == SENDER else o for o in world.directory.offices
        ),
    )
    decision = decide(
        encode_frame(world.envelope),
        from_office=SENDER,
        directory=revoked,
        now_ms=NOW + 11,
        prior=lambda _: None,
        source_seq=SEQ,
        stored_ms=stored_ms,
    )
    if error is None:
        assert isinstance(decision, Accepted)
    else:
        assert isinstance(decision, Refused)
        assert type(decision.error) is error


def test_a_republished_copy_after_revocation_is_a_replay_not_a_key_refusal(world: World) -> None:
    """Accepted (stamped), sent again after its key was revoked: REPLAY, so the office keeps its stamp."""
    office = world.directory.office(SENDER)
    assert office is not None
    keys = tuple(
        dataclasses.replace(k, status=KeyStatus.REVOKED, revoked_at_ms=NOW + 10)
        if k.algorithm.is_signing
        else k
        for k in office.keys
    )
    revoked = dataclasses.replace(
        world.directory,
        offices=tuple(
            dataclasses.replace(o, keys=keys) if o.id == SENDER else o for o in world.directory.offices
        ),
    )

    def judge(answer: Answer) -> Decision:
        return decide(
            encode_frame(world.envelope),
            from_office=SENDER,
            directory=revoked,
            now_ms=NOW + 11,
            prior=lambda _: answer,
            source_seq=SEQ,
            stored_ms=NOW + 10,
        )

    again = judge(world.prior(seq=SEQ - 1))
    assert isinstance(again, Refused)
    assert type(again.error) is errors.ReplayError
    other_header = judge(world.prior(seq=SEQ - 1, digest=bytes(32)))
    assert isinstance(other_header, Refused)
    assert type(other_header.error) is errors.KeyRevokedError
