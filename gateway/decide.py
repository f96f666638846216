"""The gateway's decision for one frame from an office: accept, refuse or forward.

Pure: bytes, the office the frame came from (its NATS subject), the
directory, a clock, and a look-up of earlier accepted messages go in; a
decision with its audit record comes out. No I/O: the shell
(``gateway.node``) appends the record, signs, routes and acknowledges.

Steps, each stopping an attack:
1. size before parsing (memory exhaustion);
2. parse the frame (malformed input);
3. an envelope's claimed sender must be the office whose subject carried it
   (one office posing as another);
4. the envelope core's verification: directory membership, key validity and
   revocation, suite floor, signatures, recipients, expiry, skew, digest;
5. routing policy (a kind an office may not send);
6. replay: a message id accepted before is refused for as long as the audit
   log keeps it, far beyond JetStream's duplicate window; only a redelivery of
   the very stream message that was accepted (same out-stream sequence, same
   header) resumes instead. The sequence, not JetStream's delivery count, tells
   the two apart: a nats-server restarted after a crash may redeliver a message
   with a delivery count of 1 again;
7. receipts: signed by the office that sent them, about a message that was
   accepted and addressed to that office, then forwarded to its sender.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from exchange.codec.envelope import decode_frame
from exchange.core import primitives
from exchange.core.envelope import Envelope, Receipt, Rejection, Routed, SignedStatement
from exchange.core.errors import (
    CodecError,
    LiaisonError,
    OversizeError,
    ReplayError,
    SenderMismatchError,
    SignatureError,
    UnknownRecipientError,
)
from exchange.core.model import Directory, ReceiptState
from exchange.core.seal import check_policy, verify_envelope, verify_statement
from gateway.audit.record import AuditRecord, Verdict

__all__ = ["Accepted", "Decision", "Forward", "Prior", "Refused", "Resume", "decide"]

# Room for the frame around an envelope of the directory's maximum size.
FRAME_OVERHEAD_BYTES = 64 * 1024


@dataclass(frozen=True)
class Prior:
    """What the audit log says about a message id accepted earlier."""

    log_index: int
    sender: str
    recipients: tuple[str, ...]
    header_digest: bytes
    source_seq: int = 0  # its frame's out-stream sequence (0: unknown)


@dataclass(frozen=True)
class Accepted:
    envelope: Envelope
    record: AuditRecord


@dataclass(frozen=True)
class Resume:
    """A redelivery of a frame already accepted (the gateway or NATS died before it was acked)."""

    envelope: Envelope
    prior: Prior


@dataclass(frozen=True)
class Refused:
    error: LiaisonError
    record: AuditRecord
    notify: str  # the office told about the refusal (the one the frame came from)


@dataclass(frozen=True)
class Forward:
    signed: SignedStatement
    receipt: Receipt
    record: AuditRecord
    to: str  # the original sender


Decision = Accepted | Resume | Refused | Forward
PriorLookup = Callable[[str], Prior | None]


def _refuse(
    error: LiaisonError, from_office: str, now_ms: int, envelope: Envelope | None, size: int
) -> Refused:
    record = _envelope_record(envelope, now_ms, Verdict.REJECTED, size, from_office, error=error)
    return Refused(error, record, from_office)


def _detail(error: LiaisonError) -> str:
    # Error texts name ids, keys and fields, never content; keep them short in the log.
    return str(error)[:300]


def _envelope_record(
    envelope: Envelope | None,
    now_ms: int,
    verdict: Verdict,
    size: int,
    from_office: str,
    *,
    error: LiaisonError | None = None,
) -> AuditRecord:
    reason = error.reason if error else None
    detail = _detail(error) if error else ""
    if envelope is None:
        return AuditRecord(
            at_ms=now_ms,
            verdict=verdict,
            sender=from_office,
            envelope_size=size,
            reason=reason,
            detail=detail,
        )
    c = envelope.header.context
    return AuditRecord(
        at_ms=now_ms,
        verdict=verdict,
        sender=c.sender,
        message_id=c.message_id,
        recipients=c.recipients,
        kind=c.kind,
        priority=c.priority,
        case_id=c.case_id,
        created_ms=c.created_ms,
        expires_ms=c.expires_ms,
        envelope_size=size,
        header_digest=primitives.sha256(envelope.header_bytes),
        ciphertext_digest=envelope.header.ciphertext_digest,
        suite=c.suite,
        reason=reason,
        detail=detail,
    )


def decide(
    payload: bytes,
    *,
    from_office: str,
    directory: Directory,
    now_ms: int,
    prior: PriorLookup,
    source_seq: int = 0,
) -> Decision:
    """Decide on one frame; ``source_seq`` is its out-stream sequence, kept in its audit record."""
    decision = _decide(
        payload,
        from_office=from_office,
        directory=directory,
        now_ms=now_ms,
        prior=prior,
        source_seq=source_seq,
    )
    if isinstance(decision, Resume) or not source_seq:
        return decision
    return replace(decision, record=replace(decision.record, source_seq=source_seq))


def _decide(
    payload: bytes,
    *,
    from_office: str,
    directory: Directory,
    now_ms: int,
    prior: PriorLookup,
    source_seq: int,
) -> Decision:
    size = len(payload)
    # 1. Size before parsing.
    limit = directory.limits.max_envelope_bytes + FRAME_OVERHEAD_BYTES
    if size > limit:
        return _refuse(
            OversizeError(f"frame of {size} bytes exceeds {limit}"), from_office, now_ms, None, size
        )
    # 2. Parse.
    try:
        frame = decode_frame(payload)
    except CodecError as e:
        return _refuse(e, from_office, now_ms, None, size)
    if isinstance(frame, SignedStatement):
        return _receipt(frame, from_office=from_office, directory=directory, now_ms=now_ms, prior=prior)
    if isinstance(frame, Routed):
        return _refuse(CodecError("offices may not send routed frames"), from_office, now_ms, None, size)
    envelope = frame
    # 3. The subject names the sender.
    if envelope.header.context.sender != from_office:
        claimed = envelope.header.context.sender
        mismatch = SenderMismatchError(f"envelope claims sender {claimed!r} but came from {from_office!r}")
        return _refuse(mismatch, from_office, now_ms, envelope, size)
    try:
        # 4. Signatures, keys, suite, recipients, expiry, skew, digest.
        verified = verify_envelope(envelope, directory=directory, now_ms=now_ms)
        # 5. Policy.
        check_policy(verified, directory)
    except LiaisonError as e:  # EnvelopeError, or Codec/OversizeError from the core's own limits
        return _refuse(e, from_office, now_ms, envelope, size)
    # 6. Replay.
    c = envelope.header.context
    earlier = prior(c.message_id)
    if earlier is not None:
        same_message = source_seq != 0 and earlier.source_seq == source_seq
        if same_message and earlier.header_digest == verified.header_digest:
            return Resume(envelope, earlier)
        replay = ReplayError(f"message {c.message_id} was accepted before at log index {earlier.log_index}")
        return _refuse(replay, from_office, now_ms, envelope, size)
    return Accepted(envelope, _envelope_record(envelope, now_ms, Verdict.ACCEPTED, size, from_office))


def _receipt(
    signed: SignedStatement, *, from_office: str, directory: Directory, now_ms: int, prior: PriorLookup
) -> Decision:
    size = len(signed.statement_bytes)
    try:
        statement = verify_statement(signed, directory=directory, now_ms=now_ms)
        if isinstance(statement, Rejection) or statement.state not in (
            ReceiptState.DELIVERED,
            ReceiptState.READ,
        ):
            raise SignatureError("offices may only send DELIVERED and READ receipts")
        if statement.signer != from_office or statement.recipient != from_office:
            raise SenderMismatchError(f"receipt signed by {statement.signer!r} came from {from_office!r}")
        earlier = prior(statement.message_id)
        if earlier is None or from_office not in earlier.recipients:
            raise UnknownRecipientError(
                f"receipt for message {statement.message_id} not addressed to {from_office}"
            )
        if earlier.header_digest != statement.header_digest:
            raise SignatureError(f"receipt for {statement.message_id} names another header digest")
    except LiaisonError as e:
        record = AuditRecord(
            at_ms=now_ms,
            verdict=Verdict.REJECTED,
            sender=from_office,
            message_id=signed.statement.message_id,
            envelope_size=size,
            reason=e.reason,
            detail=_detail(e),
        )
        return Refused(e, record, from_office)
    record = AuditRecord(
        at_ms=now_ms,
        verdict=Verdict.RECEIPT,
        sender=from_office,
        message_id=statement.message_id,
        recipients=(earlier.sender,),
        envelope_size=size,
        header_digest=statement.header_digest,
        receipt_state=statement.state,
        receipt_signer=statement.signer,
    )
    return Forward(signed, statement, record, earlier.sender)
