"""Audit records and tree heads to and from their wire bytes.

The bytes of an encoded record are the Merkle leaf input; decoding keeps no
link back, so callers store the bytes they hashed.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Final, TypeVar

from google.protobuf.message import DecodeError

from exchange._pb.liaison.v1 import audit_pb2, envelope_pb2
from exchange.codec.envelope import parse_limited, signatures_from_pb, signatures_to_pb
from exchange.core.envelope import Signature
from exchange.core.errors import CodecError, OversizeError
from exchange.core.model import Kind, Priority, Reason, ReceiptState, Suite
from gateway.audit.query import StatsRow
from gateway.audit.record import AuditRecord, Verdict
from gateway.audit.treehead import Cosignature, SignedTreeHead, TreeHead

__all__ = [
    "MAX_RECORD_BYTES",
    "cosignature_from_pb",
    "cosignature_to_pb",
    "decode_record",
    "decode_signature",
    "decode_signed_tree_head",
    "encode_record",
    "encode_signature",
    "encode_signed_tree_head",
    "encode_tree_head",
    "record_from_pb",
    "record_to_pb",
    "signed_tree_head_from_pb",
    "signed_tree_head_to_pb",
    "stats_from_pb",
    "stats_to_pb",
]

MAX_RECORD_BYTES: Final = 64 * 1024
_E = TypeVar("_E", bound=enum.IntEnum)
RECORD_VERSION: Final = 1


def record_to_pb(r: AuditRecord) -> audit_pb2.AuditRecord:
    return audit_pb2.AuditRecord(
        version=RECORD_VERSION,
        at_ms=r.at_ms,
        verdict=int(r.verdict),  # type: ignore[arg-type]
        reason=int(r.reason or 0),  # type: ignore[arg-type]
        message_id=r.message_id,
        sender=r.sender,
        recipients=list(r.recipients),
        kind=int(r.kind or 0),  # type: ignore[arg-type]
        priority=int(r.priority or 0),  # type: ignore[arg-type]
        case_id=r.case_id,
        created_ms=r.created_ms,
        expires_ms=r.expires_ms,
        envelope_size=r.envelope_size,
        header_digest=r.header_digest,
        ciphertext_digest=r.ciphertext_digest,
        receipt_state=int(r.receipt_state or 0),  # type: ignore[arg-type]
        receipt_signer=r.receipt_signer,
        detail=r.detail,
        suite=int(r.suite or 0),  # type: ignore[arg-type]
        source_seq=r.source_seq,
    )


def encode_record(r: AuditRecord) -> bytes:
    return record_to_pb(r).SerializeToString(deterministic=True)


def record_from_pb(pb: audit_pb2.AuditRecord) -> AuditRecord:
    try:
        return AuditRecord(
            at_ms=pb.at_ms,
            verdict=Verdict(pb.verdict),
            reason=Reason(pb.reason) if pb.reason else None,
            message_id=pb.message_id,
            sender=pb.sender,
            recipients=tuple(pb.recipients),
            kind=Kind(pb.kind) if pb.kind else None,
            priority=Priority(pb.priority) if pb.priority else None,
            case_id=pb.case_id,
            created_ms=pb.created_ms,
            expires_ms=pb.expires_ms,
            envelope_size=pb.envelope_size,
            header_digest=pb.header_digest,
            ciphertext_digest=pb.ciphertext_digest,
            suite=Suite(pb.suite) if pb.suite else None,
            receipt_state=ReceiptState(pb.receipt_state) if pb.receipt_state else None,
            receipt_signer=pb.receipt_signer,
            detail=pb.detail,
            source_seq=pb.source_seq,
        )
    except ValueError as e:
        raise CodecError(f"audit record: {e}") from e


def decode_record(data: bytes) -> AuditRecord:
    if len(data) > MAX_RECORD_BYTES:
        raise OversizeError(f"audit record of {len(data)} bytes exceeds {MAX_RECORD_BYTES}")
    pb = audit_pb2.AuditRecord()
    try:
        pb.ParseFromString(data)
    except DecodeError as e:
        raise CodecError("audit record does not parse") from e
    if pb.version != RECORD_VERSION:
        raise CodecError(f"audit record version {pb.version} is not {RECORD_VERSION}")
    return record_from_pb(pb)


# --- tree heads --------------------------------------------------------------------

MAX_TREE_HEAD_BYTES: Final = 64 * 1024


def encode_tree_head(head: TreeHead) -> bytes:
    pb = audit_pb2.TreeHead(
        size=head.size, root=head.root, timestamp_ms=head.timestamp_ms, gateway=head.gateway
    )
    return pb.SerializeToString(deterministic=True)


def signed_tree_head_to_pb(s: SignedTreeHead) -> audit_pb2.SignedTreeHead:
    return audit_pb2.SignedTreeHead(
        tree_head=s.tree_head_bytes,
        signatures=[signature_to_pb(x) for x in s.signatures],
        cosignatures=[
            audit_pb2.Cosignature(witness=c.witness, signature=signature_to_pb(c.signature))
            for c in s.cosignatures
        ],
    )


def encode_signed_tree_head(s: SignedTreeHead) -> bytes:
    return signed_tree_head_to_pb(s).SerializeToString(deterministic=True)


def signed_tree_head_from_pb(pb: audit_pb2.SignedTreeHead) -> SignedTreeHead:
    head_pb = parse_limited(audit_pb2.TreeHead(), pb.tree_head, MAX_TREE_HEAD_BYTES, "tree head")
    try:
        head = TreeHead(head_pb.size, head_pb.root, head_pb.timestamp_ms, head_pb.gateway)
    except ValueError as e:
        raise CodecError(f"tree head: {e}") from e
    return SignedTreeHead(
        tree_head=head,
        tree_head_bytes=pb.tree_head,
        signatures=tuple(signature_from_pb(x) for x in pb.signatures),
        cosignatures=tuple(Cosignature(c.witness, signature_from_pb(c.signature)) for c in pb.cosignatures),
    )


def decode_signed_tree_head(data: bytes) -> SignedTreeHead:
    return signed_tree_head_from_pb(
        parse_limited(audit_pb2.SignedTreeHead(), data, MAX_TREE_HEAD_BYTES, "signed tree head")
    )


def signature_to_pb(s: Signature) -> envelope_pb2.Signature:
    return signatures_to_pb((s,))[0]


def signature_from_pb(m: envelope_pb2.Signature) -> Signature:
    return signatures_from_pb([m])[0]


def encode_signature(s: Signature) -> bytes:
    return signature_to_pb(s).SerializeToString(deterministic=True)


def decode_signature(data: bytes) -> Signature:
    return signature_from_pb(parse_limited(envelope_pb2.Signature(), data, MAX_TREE_HEAD_BYTES, "signature"))


def cosignature_from_pb(m: audit_pb2.Cosignature) -> Cosignature:
    return Cosignature(m.witness, signature_from_pb(m.signature))


def cosignature_to_pb(c: Cosignature) -> audit_pb2.Cosignature:
    return audit_pb2.Cosignature(witness=c.witness, signature=signature_to_pb(c.signature))


def _label_enum(cls: type[_E], label: str) -> int:
    """A stored label ("case-message") back to its wire number; "" is 0."""
    return int(cls[label.upper().replace("-", "_")]) if label else 0


def stats_to_pb(rows: Sequence[StatsRow]) -> audit_pb2.StatsResponse:
    return audit_pb2.StatsResponse(
        rows=[
            audit_pb2.StatsRow(
                sender=r.sender,
                recipient=r.recipient,
                kind=_label_enum(Kind, r.kind),  # type: ignore[arg-type]
                verdict=_label_enum(Verdict, r.verdict),  # type: ignore[arg-type]
                reason=_label_enum(Reason, r.reason),  # type: ignore[arg-type]
                count=r.count,
            )
            for r in rows
        ]
    )


def stats_from_pb(m: audit_pb2.StatsResponse) -> list[StatsRow]:
    def label(cls: type[_E], value: int) -> str:
        try:
            return cls(value).name.lower().replace("_", "-") if value else ""
        except ValueError:  # a gateway newer than this client, or a broken one
            raise CodecError(f"stats row has unknown {cls.__name__} value {value}") from None

    return [
        StatsRow(
            r.sender,
            r.recipient,
            label(Kind, r.kind),
            label(Verdict, r.verdict),
            label(Reason, r.reason),
            r.count,
        )
        for r in m.rows
    ]
