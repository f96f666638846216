"""Codec for envelopes, signed statements and transport frames.

Converts between the domain types of ``exchange.core.envelope`` and the protobuf
messages of ``envelope.proto``, ``body.proto`` (statements) and
``transport.proto``. Decoders check a named size limit before parsing and
turn protobuf errors, unknown enum values and broken invariants into
CodecError (OversizeError for size). Signed parts (header, context,
statement) are kept as the exact bytes that arrived.

This module does not verify signatures or check the directory; that is
``exchange.core.seal``.
"""

from __future__ import annotations

import enum
from dataclasses import replace
from typing import Final, TypeVar

from google.protobuf.message import DecodeError, Message

from exchange._pb.liaison.v1 import audit_pb2, body_pb2, envelope_pb2, transport_pb2
from exchange.core.envelope import (
    AttachmentDigest,
    Envelope,
    Header,
    HeaderContext,
    Receipt,
    Rejection,
    Routed,
    Signature,
    SignedStatement,
    Statement,
    WrappedKey,
)
from exchange.core.errors import CodecError, OversizeError
from exchange.core.logproof import (
    MAX_HEAD_SIGNATURES,
    MAX_LOG_PROOF_BYTES,
    MAX_LOG_RECORD_BYTES,
    MAX_TREE_HEAD_BYTES,
    LoggedClaim,
    LogHead,
    LogProof,
)
from exchange.core.merkle import HASH_SIZE, MAX_PROOF_LEN
from exchange.core.model import Algorithm, Handling, Kind, Priority, Reason, ReceiptState, Suite

__all__ = [
    "MAX_CONTEXT_BYTES",
    "MAX_ENVELOPE_BYTES",
    "MAX_FRAME_BYTES",
    "MAX_HEADER_BYTES",
    "MAX_SIGNATURES",
    "MAX_SIGNED_STATEMENT_BYTES",
    "MAX_STATEMENT_BYTES",
    "MAX_WRAPPED_KEYS",
    "Frame",
    "decode_enum",
    "decode_envelope",
    "decode_frame",
    "decode_header",
    "decode_header_context",
    "decode_log_head",
    "decode_logged_claim",
    "decode_signed_statement",
    "decode_statement",
    "encode_envelope",
    "encode_frame",
    "encode_header",
    "encode_header_context",
    "encode_signed_statement",
    "encode_statement",
    "log_proof_from_pb",
    "log_proof_to_pb",
    "parse_limited",
    "signatures_from_pb",
    "signatures_to_pb",
    "signed_statement_from_pb",
    "signed_statement_to_pb",
]

# Hard ceilings of the codec; the directory's Limits may be (and by default are) lower.
MAX_ENVELOPE_BYTES: Final = 16 * 1024 * 1024
MAX_HEADER_BYTES: Final = 512 * 1024
MAX_CONTEXT_BYTES: Final = 64 * 1024
MAX_SIGNATURES: Final = 8
MAX_WRAPPED_KEYS: Final = 256
MAX_STATEMENT_BYTES: Final = 16 * 1024
MAX_SIGNED_STATEMENT_BYTES: Final = 64 * 1024
MAX_FRAME_BYTES: Final = MAX_ENVELOPE_BYTES + MAX_SIGNED_STATEMENT_BYTES + MAX_LOG_PROOF_BYTES + 1024

Frame = Envelope | SignedStatement | Routed

_E = TypeVar("_E", bound=enum.IntEnum)
_M = TypeVar("_M", bound=Message)


def decode_enum(cls: type[_E], value: int, what: str) -> _E:
    """A domain enum from a wire number; 0 (unspecified) and unknown numbers are CodecError."""
    try:
        return cls(value)
    except ValueError as e:
        raise CodecError(f"unknown {what} value {value}") from e


def parse_limited(message: _M, data: bytes, limit: int, what: str) -> _M:
    """Parse ``data`` into ``message`` after checking ``limit``; map DecodeError."""
    if len(data) > limit:
        raise OversizeError(f"{what} is {len(data)} bytes, limit {limit}")
    try:
        message.ParseFromString(data)
    except DecodeError as e:
        raise CodecError(f"{what} does not parse") from e
    return message


def _ser(message: Message) -> bytes:
    return message.SerializeToString(deterministic=True)


# --- header context --------------------------------------------------------------


def encode_header_context(ctx: HeaderContext) -> bytes:
    return _ser(
        envelope_pb2.HeaderContext(
            version=ctx.version,
            message_id=ctx.message_id,
            sender=ctx.sender,
            recipients=ctx.recipients,
            kind=envelope_pb2.Kind.ValueType(ctx.kind),
            priority=envelope_pb2.Priority.ValueType(ctx.priority),
            case_id=ctx.case_id,
            in_reply_to=ctx.in_reply_to,
            created_ms=ctx.created_ms,
            expires_ms=ctx.expires_ms,
            handling=envelope_pb2.Handling.ValueType(ctx.handling),
            suite=envelope_pb2.Suite.ValueType(ctx.suite),
            signing_key_ids=ctx.signing_key_ids,
            body_size=ctx.body_size,
            attachments=[
                envelope_pb2.AttachmentDigest(
                    id=a.id, owner=a.owner, sealed_size=a.sealed_size, chunk_count=a.chunk_count, root=a.root
                )
                for a in ctx.attachments
            ],
        )
    )


def decode_header_context(data: bytes) -> HeaderContext:
    m = parse_limited(envelope_pb2.HeaderContext(), data, MAX_CONTEXT_BYTES, "header context")
    try:
        return HeaderContext(
            version=m.version,
            message_id=m.message_id,
            sender=m.sender,
            recipients=tuple(m.recipients),
            kind=decode_enum(Kind, m.kind, "kind"),
            priority=decode_enum(Priority, m.priority, "priority"),
            case_id=m.case_id,
            in_reply_to=m.in_reply_to,
            created_ms=m.created_ms,
            expires_ms=m.expires_ms,
            handling=decode_enum(Handling, m.handling, "handling"),
            suite=decode_enum(Suite, m.suite, "suite"),
            signing_key_ids=tuple(m.signing_key_ids),
            body_size=m.body_size,
            attachments=tuple(
                AttachmentDigest(a.id, a.owner, a.sealed_size, a.chunk_count, a.root) for a in m.attachments
            ),
        )
    except ValueError as e:
        raise CodecError(f"header context is invalid: {e}") from e


# --- header ------------------------------------------------------------------------


def encode_header(header: Header) -> bytes:
    return _ser(
        envelope_pb2.Header(
            context=header.context_bytes,
            ciphertext_digest=header.ciphertext_digest,
            wrapped_keys=[
                envelope_pb2.WrappedKey(recipient=w.recipient, key_id=w.key_id, enc=w.enc)
                for w in header.wrapped_keys
            ],
        )
    )


def decode_header(data: bytes) -> Header:
    m = parse_limited(envelope_pb2.Header(), data, MAX_HEADER_BYTES, "header")
    if len(m.wrapped_keys) > MAX_WRAPPED_KEYS:
        raise OversizeError(f"header has {len(m.wrapped_keys)} wrapped keys, limit {MAX_WRAPPED_KEYS}")
    context = decode_header_context(m.context)
    try:
        return Header(
            context=context,
            context_bytes=m.context,
            ciphertext_digest=m.ciphertext_digest,
            wrapped_keys=tuple(WrappedKey(w.recipient, w.key_id, w.enc) for w in m.wrapped_keys),
        )
    except ValueError as e:
        raise CodecError(f"header is invalid: {e}") from e


# --- signatures and envelope -------------------------------------------------------


def signatures_to_pb(signatures: tuple[Signature, ...]) -> list[envelope_pb2.Signature]:
    return [
        envelope_pb2.Signature(
            key_id=s.key_id, algorithm=envelope_pb2.Algorithm.ValueType(s.algorithm), value=s.value
        )
        for s in signatures
    ]


def signatures_from_pb(ms: list[envelope_pb2.Signature]) -> tuple[Signature, ...]:
    if len(ms) > MAX_SIGNATURES:
        raise OversizeError(f"{len(ms)} signatures, limit {MAX_SIGNATURES}")
    return tuple(Signature(s.key_id, decode_enum(Algorithm, s.algorithm, "algorithm"), s.value) for s in ms)


def _envelope_pb(envelope: Envelope) -> envelope_pb2.Envelope:
    return envelope_pb2.Envelope(
        header=envelope.header_bytes,
        signatures=signatures_to_pb(envelope.signatures),
        ciphertext=envelope.ciphertext,
    )


def _envelope(m: envelope_pb2.Envelope) -> Envelope:
    return Envelope(
        header=decode_header(m.header),
        header_bytes=m.header,
        signatures=signatures_from_pb(list(m.signatures)),
        ciphertext=m.ciphertext,
    )


def encode_envelope(envelope: Envelope) -> bytes:
    return _ser(_envelope_pb(envelope))


def decode_envelope(data: bytes, limit: int = MAX_ENVELOPE_BYTES) -> Envelope:
    """Parse envelope bytes; ``limit`` (e.g. the directory's) is checked before parsing."""
    limit = min(limit, MAX_ENVELOPE_BYTES)
    return _envelope(parse_limited(envelope_pb2.Envelope(), data, limit, "envelope"))


# --- statements ----------------------------------------------------------------------


def encode_statement(statement: Statement) -> bytes:
    if isinstance(statement, Receipt):
        return _ser(
            body_pb2.Statement(
                receipt=body_pb2.Receipt(
                    message_id=statement.message_id,
                    state=body_pb2.ReceiptState.ValueType(statement.state),
                    signer=statement.signer,
                    recipient=statement.recipient,
                    at_ms=statement.at_ms,
                    header_digest=statement.header_digest,
                    log_index=statement.log_index,
                    sender=statement.sender,
                )
            )
        )
    return _ser(
        body_pb2.Statement(
            rejection=body_pb2.Rejection(
                message_id=statement.message_id,
                reason=body_pb2.RejectionReason.ValueType(statement.reason),
                detail=statement.detail,
                signer=statement.signer,
                at_ms=statement.at_ms,
                header_digest=statement.header_digest,
                log_index=statement.log_index,
                sender=statement.sender,
            )
        )
    )


def decode_statement(data: bytes) -> Statement:
    m = parse_limited(body_pb2.Statement(), data, MAX_STATEMENT_BYTES, "statement")
    which = m.WhichOneof("content")
    try:
        if which == "receipt":
            r = m.receipt
            return Receipt(
                message_id=r.message_id,
                state=decode_enum(ReceiptState, r.state, "receipt state"),
                signer=r.signer,
                at_ms=r.at_ms,
                header_digest=r.header_digest,
                sender=r.sender,
                recipient=r.recipient,
                log_index=r.log_index,
            )
        if which == "rejection":
            j = m.rejection
            return Rejection(
                message_id=j.message_id,
                reason=decode_enum(Reason, j.reason, "rejection reason"),
                detail=j.detail,
                signer=j.signer,
                at_ms=j.at_ms,
                header_digest=j.header_digest,
                sender=j.sender,
                log_index=j.log_index,
            )
    except ValueError as e:
        raise CodecError(f"statement is invalid: {e}") from e
    raise CodecError("statement is empty")


def signed_statement_to_pb(signed: SignedStatement) -> body_pb2.SignedStatement:
    return body_pb2.SignedStatement(
        statement=signed.statement_bytes, signatures=signatures_to_pb(signed.signatures)
    )


def signed_statement_from_pb(m: body_pb2.SignedStatement) -> SignedStatement:
    return SignedStatement(
        statement=decode_statement(m.statement),
        statement_bytes=m.statement,
        signatures=signatures_from_pb(list(m.signatures)),
    )


def encode_signed_statement(signed: SignedStatement) -> bytes:
    return _ser(signed_statement_to_pb(signed))


def decode_signed_statement(data: bytes) -> SignedStatement:
    m = parse_limited(body_pb2.SignedStatement(), data, MAX_SIGNED_STATEMENT_BYTES, "signed statement")
    return signed_statement_from_pb(m)


# --- transport frames ------------------------------------------------------------------


def encode_frame(item: Frame) -> bytes:
    if isinstance(item, Envelope):
        return _ser(transport_pb2.Frame(envelope=_envelope_pb(item)))
    if isinstance(item, SignedStatement):
        frame = transport_pb2.Frame(statement=signed_statement_to_pb(item))
        if item.proof is not None:
            frame.proof.CopyFrom(log_proof_to_pb(item.proof))
        return _ser(frame)
    routed = transport_pb2.Routed(
        envelope=_envelope_pb(item.envelope), stamp=signed_statement_to_pb(item.stamp)
    )
    if item.stamp.proof is not None:
        routed.proof.CopyFrom(log_proof_to_pb(item.stamp.proof))
    return _ser(transport_pb2.Frame(routed=routed))


def decode_frame(data: bytes) -> Frame:
    """One NATS payload: an envelope, a signed statement, or a routed envelope."""
    m = parse_limited(transport_pb2.Frame(), data, MAX_FRAME_BYTES, "frame")
    which = m.WhichOneof("item")
    if which == "envelope":
        return _envelope(m.envelope)
    if which == "statement":
        signed = signed_statement_from_pb(m.statement)
        if m.HasField("proof"):
            signed = replace(signed, proof=log_proof_from_pb(m.proof))
        return signed
    if which == "routed":
        if not m.routed.HasField("envelope") or not m.routed.HasField("stamp"):
            raise CodecError("routed frame lacks its envelope or stamp")
        stamp = signed_statement_from_pb(m.routed.stamp)
        if m.routed.HasField("proof"):
            stamp = replace(stamp, proof=log_proof_from_pb(m.routed.proof))
        return Routed(_envelope(m.routed.envelope), stamp)
    raise CodecError("frame is empty")


# --- log proofs (ADR 0013) ---------------------------------------------------------------


def log_proof_to_pb(proof: LogProof) -> transport_pb2.LogProof:
    head = audit_pb2.SignedTreeHead(
        tree_head=proof.head.head_bytes, signatures=signatures_to_pb(proof.head.signatures)
    )
    return transport_pb2.LogProof(
        record=proof.record,
        leaf_index=proof.leaf_index,
        tree_head=head,
        inclusion=list(proof.inclusion),
        linked_size=proof.linked_size,
        consistency=list(proof.consistency),
    )


def _hashes(values: list[bytes], what: str) -> tuple[bytes, ...]:
    if len(values) > MAX_PROOF_LEN:
        raise OversizeError(f"{what} has {len(values)} hashes, limit {MAX_PROOF_LEN}")
    if any(len(v) != HASH_SIZE for v in values):
        raise CodecError(f"{what} holds a hash that is not {HASH_SIZE} bytes")
    return tuple(values)


def decode_log_head(head_bytes: bytes, signatures: list[envelope_pb2.Signature]) -> LogHead:
    """A signed tree head (``liaison.v1.TreeHead`` bytes + signatures), bounds checked first."""
    if len(signatures) > MAX_HEAD_SIGNATURES:
        raise OversizeError(f"tree head has {len(signatures)} signatures, limit {MAX_HEAD_SIGNATURES}")
    h = parse_limited(audit_pb2.TreeHead(), head_bytes, MAX_TREE_HEAD_BYTES, "tree head")
    try:
        return LogHead(
            size=h.size,
            root=h.root,
            timestamp_ms=h.timestamp_ms,
            gateway=h.gateway,
            head_bytes=head_bytes,
            signatures=signatures_from_pb(signatures),
        )
    except ValueError as e:
        raise CodecError(f"tree head is invalid: {e}") from e


def decode_logged_claim(record: bytes) -> LoggedClaim:
    """What an audit record (``liaison.v1.AuditRecord``) says about its message."""
    r = parse_limited(audit_pb2.AuditRecord(), record, MAX_LOG_RECORD_BYTES, "audit record")
    return LoggedClaim(
        verdict=int(r.verdict), message_id=r.message_id, sender=r.sender, header_digest=r.header_digest
    )


def log_proof_from_pb(m: transport_pb2.LogProof) -> LogProof:
    if m.ByteSize() > MAX_LOG_PROOF_BYTES:
        raise OversizeError(f"log proof is {m.ByteSize()} bytes, limit {MAX_LOG_PROOF_BYTES}")
    if not m.HasField("tree_head"):
        raise CodecError("log proof lacks its tree head")
    return LogProof(
        record=m.record,
        claim=decode_logged_claim(m.record),
        leaf_index=m.leaf_index,
        head=decode_log_head(m.tree_head.tree_head, list(m.tree_head.signatures)),
        inclusion=_hashes(list(m.inclusion), "inclusion proof"),
        linked_size=m.linked_size,
        consistency=_hashes(list(m.consistency), "consistency proof"),
    )
