"""The gateway's decision for one frame from an office: accept, refuse or forward.

Pure: bytes, the office the frame came from (its NATS subject), the
directory, a clock, and a look-up of earlier accepted messages go in; a
decision with its whole audit record comes out. No I/O: the shell
(``gateway.node``) does the look-up's reads, appends the record, signs,
routes and acknowledges. The look-up answers with a ``Prior`` (in the audit
log), ``InFlight`` (being accepted by a concurrent handler of this gateway,
not durable yet) or None.

The plan for an envelope (``decide``), each step stopping an attack:
(1) size before parsing (memory exhaustion);
(2) parse the frame (malformed input); a signed statement goes to the
    receipt plan below, a routed frame is refused (offices do not route);
(2b) every header field within its named bound (``exchange.core.bounds``): a
    field over its bound is refused with a record that leaves the field out,
    so one office's poison header cannot make a record the audit store refuses
    or a reader cannot read (a halted log, a frame retried for ever);
(3) the envelope's claimed sender must be the office whose subject carried it
    (one office posing as another);
(4) the envelope core's verification: directory membership, key validity and
    revocation (judged no earlier than JetStream stored the frame), suite floor,
    signatures, recipients, expiry, skew, digest; a copy of an accepted message
    that fails only on its key (republished after a revocation) is a replay;
(5) routing policy (a kind an office may not send);
(6) replay: a message id accepted before (or being accepted right now) is
    refused for as long as the audit log keeps it, far beyond JetStream's
    duplicate window; only a redelivery of the very stream message that was
    accepted (same out-stream sequence, same header) resumes instead. The
    sequence, not JetStream's delivery count, tells the two apart: a
    nats-server restarted after a crash may redeliver a message with a
    delivery count of 1 again.

The plan for a receipt (``_receipt``):
(R1) its signatures verify (``seal.verify_statement``: keys judged no earlier
     than JetStream stored the frame, its time within the statement bounds);
(R2) offices send only DELIVERED and READ receipts;
(R3) signed by the office that sent it, about itself;
(R4) about a message accepted before and addressed to that office;
(R5) naming that message's header digest; it is then forwarded to the sender.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from exchange.core import primitives
from exchange.core.bounds import MAX_DETAIL_LEN
from exchange.core.codec.envelope import decode_frame
from exchange.core.envelope import (
    Envelope,
    Receipt,
    Rejection,
    Routed,
    SignedStatement,
    check_envelope_bounds,
)
from exchange.core.errors import (
    CodecError,
    KeyNotValidError,
    KeyRevokedError,
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

__all__ = [
    "Accepted",
    "Decision",
    "Forward",
    "InFlight",
    "Prior",
    "PriorLookup",
    "Refused",
    "Resume",
    "decide",
]

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
class InFlight:
    """A message id a concurrent handler of this gateway is accepting: no audit record yet."""

    message_id: str


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
# The shell's look-up of a message id: in the audit log, being accepted right now, or unknown.
PriorLookup = Callable[[str], Prior | InFlight | None]


@dataclass(frozen=True)
class _Arrival:
    """What every audit record of one frame says about its arrival."""

    from_office: str  # the office whose out subject carried it
    at_ms: int
    size: int
    source_seq: int  # its out-stream sequence (0: unknown)
    stored_ms: int = 0  # when JetStream stored it (0: unknown): keys are judged no earlier


def _refuse(
    error: LiaisonError, arrival: _Arrival, envelope: Envelope | None, *, within_bounds: bool = True
) -> Refused:
    record = _envelope_record(envelope, arrival, Verdict.REJECTED, error=error)
    if not within_bounds:
        # Only what was checked: the id (a UUIDv7) and digests; the offending fields stay out.
        record = dataclasses.replace(record, recipients=(), case_id="")
    return Refused(error, record, arrival.from_office)


def _detail(error: LiaisonError) -> str:
    # Error texts name ids, keys and fields, never content; keep them short in the log.
    return str(error)[:MAX_DETAIL_LEN]


def _envelope_record(
    envelope: Envelope | None, arrival: _Arrival, verdict: Verdict, *, error: LiaisonError | None = None
) -> AuditRecord:
    reason = error.reason if error else None
    detail = _detail(error) if error else ""
    if envelope is None:
        return AuditRecord(
            at_ms=arrival.at_ms,
            verdict=verdict,
            sender=arrival.from_office,
            envelope_size=arrival.size,
            reason=reason,
            detail=detail,
            source_seq=arrival.source_seq,
        )
    c = envelope.header.context
    return AuditRecord(
        at_ms=arrival.at_ms,
        verdict=verdict,
        # The office whose out subject carried it, never the sender it claims (step 3
        # makes the two equal for an accepted envelope). Stops: a refusal logged in
        # another office's name.
        sender=arrival.from_office,
        message_id=c.message_id,
        recipients=c.recipients,
        kind=c.kind,
        priority=c.priority,
        case_id=c.case_id,
        created_ms=c.created_ms,
        expires_ms=c.expires_ms,
        envelope_size=arrival.size,
        header_digest=primitives.sha256(envelope.header_bytes),
        ciphertext_digest=envelope.header.ciphertext_digest,
        suite=c.suite,
        reason=reason,
        detail=detail,
        source_seq=arrival.source_seq,
    )


def decide(
    payload: bytes,
    *,
    from_office: str,
    directory: Directory,
    now_ms: int,
    prior: PriorLookup,
    source_seq: int = 0,
    stored_ms: int = 0,
) -> Decision:
    """Decide on one frame; ``source_seq`` is its out-stream sequence, kept in its audit record.

    ``stored_ms`` is JetStream's own timestamp of the frame: keys are judged no
    earlier than that, whatever time the sender wrote into what it signed.
    """
    size = len(payload)
    arrival = _Arrival(from_office, now_ms, size, source_seq, stored_ms)
    # (1): size before parsing.
    limit = directory.limits.max_envelope_bytes + FRAME_OVERHEAD_BYTES
    if size > limit:
        oversize = OversizeError(f"frame of {size} bytes exceeds {limit}")
        return _refuse(oversize, arrival, None)
    # (2): parse; statements and routed frames leave here.
    try:
        frame = decode_frame(payload)
    except CodecError as e:
        return _refuse(e, arrival, None)
    if isinstance(frame, SignedStatement):
        return _receipt(frame, arrival, directory=directory, prior=prior)
    if isinstance(frame, Routed):
        routed = CodecError("offices may not send routed frames")
        return _refuse(routed, arrival, None)
    envelope = frame
    # (2b): every field within its bound, before anything of it is used or logged.
    try:
        check_envelope_bounds(envelope)
    except CodecError as e:
        return _refuse(e, arrival, envelope, within_bounds=False)
    # (3): the subject names the sender.
    if envelope.header.context.sender != from_office:
        claimed = envelope.header.context.sender
        mismatch = SenderMismatchError(f"envelope claims sender {claimed!r} but came from {from_office!r}")
        return _refuse(mismatch, arrival, envelope)
    try:
        # (4): signatures, keys, suite, recipients, expiry, skew, digest.
        verified = verify_envelope(envelope, directory=directory, now_ms=now_ms, stored_ms=stored_ms)
        # (5): policy.
        check_policy(verified, directory)
    except (KeyRevokedError, KeyNotValidError) as e:
        # A new copy of a message accepted before (its office republishing after a crash)
        # sent after the key was revoked is still a replay: the office keeps its stamp.
        earlier = prior(envelope.header.context.message_id)
        if isinstance(earlier, Prior) and earlier.header_digest == primitives.sha256(envelope.header_bytes):
            message_id = envelope.header.context.message_id
            replay = ReplayError(f"message {message_id} was accepted before at log index {earlier.log_index}")
            return _refuse(replay, arrival, envelope)
        return _refuse(e, arrival, envelope)
    except LiaisonError as e:  # EnvelopeError, or Codec/OversizeError from the core's own limits
        return _refuse(e, arrival, envelope)
    # (6): replay, unless this is the very stream message accepted before (resume).
    c = envelope.header.context
    earlier = prior(c.message_id)
    if isinstance(earlier, InFlight):
        replay = ReplayError(f"message {c.message_id} is being accepted from another frame")
        return _refuse(replay, arrival, envelope)
    if earlier is not None:
        same_message = source_seq != 0 and earlier.source_seq == source_seq
        if same_message and earlier.header_digest == verified.header_digest:
            return Resume(envelope, earlier)
        replay = ReplayError(f"message {c.message_id} was accepted before at log index {earlier.log_index}")
        return _refuse(replay, arrival, envelope)
    record = _envelope_record(envelope, arrival, Verdict.ACCEPTED)
    return Accepted(envelope, record)


def _receipt(
    signed: SignedStatement, arrival: _Arrival, *, directory: Directory, prior: PriorLookup
) -> Decision:
    from_office, now_ms, size = arrival.from_office, arrival.at_ms, len(signed.statement_bytes)
    try:
        # (R1): signatures.
        statement = verify_statement(signed, directory=directory, now_ms=now_ms, stored_ms=arrival.stored_ms)
        # (R2): only DELIVERED and READ. Stops: an office forging the gateway's STAMPED.
        if isinstance(statement, Rejection) or statement.state not in (
            ReceiptState.DELIVERED,
            ReceiptState.READ,
        ):
            raise SignatureError("offices may only send DELIVERED and READ receipts")
        # (R3): the office that sent it signed it, about itself. Stops: one office
        #     confirming delivery on another's behalf.
        if statement.signer != from_office or statement.recipient != from_office:
            raise SenderMismatchError(f"receipt signed by {statement.signer!r} came from {from_office!r}")
        # (R4): about a message accepted and addressed to this office (one being accepted
        #     right now cannot have reached it yet). Stops: receipts for mail never sent.
        earlier = prior(statement.message_id)
        if not isinstance(earlier, Prior) or from_office not in earlier.recipients:
            raise UnknownRecipientError(
                f"receipt for message {statement.message_id} not addressed to {from_office}"
            )
        # (R5): about that very header. Stops: a receipt for another version of the message.
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
            source_seq=arrival.source_seq,
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
        source_seq=arrival.source_seq,
    )
    return Forward(signed, statement, record, earlier.sender)
