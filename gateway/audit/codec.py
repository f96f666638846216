"""Audit records, tree heads and the gateway's RPC messages to and from domain values.

The bytes of an encoded record are the Merkle leaf input; decoding keeps no
link back, so callers store the bytes they hashed. The AuditService and
DirectoryService requests and responses are built and read here for both
ends (``gateway.service`` serves them, ``gateway.client`` calls them), so
neither builds or reads a protobuf message itself. Every decoder maps a
malformed message or an unknown enum number to ``CodecError``. It verifies
nothing: signatures and proofs are ``gateway.audit.verify``'s.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Final, NamedTuple, TypeVar

from google.protobuf.message import DecodeError

from exchange._pb.liaison.v1 import audit_pb2, directory_pb2, envelope_pb2
from exchange.core.codec.directory import MAX_SIGNED_DIRECTORY_BYTES
from exchange.core.codec.envelope import parse_limited, signatures_from_pb, signatures_to_pb
from exchange.core.envelope import Signature
from exchange.core.errors import CodecError, OversizeError
from exchange.core.model import Kind, Priority, Reason, ReceiptState, Suite
from gateway.audit.query import MAX_RECORD_BYTES, AuditFilter, AuditPage, StatsRow, StoredEntry
from gateway.audit.record import AuditRecord, Verdict
from gateway.audit.treehead import Cosignature, SignedTreeHead, TreeHead

__all__ = [
    "AUDIT_SERVICE",
    "DIRECTORY_SERVICE",
    "MAX_RECORD_BYTES",
    "Logged",
    "QueryParams",
    "add_cosignature_request_from_pb",
    "add_cosignature_request_to_pb",
    "add_cosignature_response_to_pb",
    "consistency_proof_request_from_pb",
    "consistency_proof_request_to_pb",
    "consistency_proof_response_from_pb",
    "consistency_proof_response_to_pb",
    "cosignature_from_pb",
    "cosignature_to_pb",
    "decode_record",
    "decode_signature",
    "decode_signed_tree_head",
    "directory_request_to_pb",
    "directory_response_from_pb",
    "directory_response_to_pb",
    "encode_record",
    "encode_signature",
    "encode_signed_tree_head",
    "encode_tree_head",
    "inclusion_proof_request_from_pb",
    "inclusion_proof_request_to_pb",
    "inclusion_proof_response_from_pb",
    "inclusion_proof_response_to_pb",
    "logged_record_to_pb",
    "publish_directory_request_from_pb",
    "publish_directory_request_to_pb",
    "publish_directory_response_from_pb",
    "publish_directory_response_to_pb",
    "query_request_from_pb",
    "query_request_to_pb",
    "query_response_from_pb",
    "query_response_to_pb",
    "record_from_pb",
    "record_to_pb",
    "signed_tree_head_from_pb",
    "signed_tree_head_to_pb",
    "stats_from_pb",
    "stats_request_from_pb",
    "stats_request_to_pb",
    "stats_to_pb",
    "tail_request_from_pb",
    "tail_request_to_pb",
    "tail_response_from_pb",
    "tail_response_to_pb",
    "tree_head_request_from_pb",
    "tree_head_request_to_pb",
    "tree_head_response_from_pb",
    "tree_head_response_to_pb",
]

# Full gRPC names ("liaison.v1.AuditService"), for health, reflection and access rules.
AUDIT_SERVICE: Final = audit_pb2.DESCRIPTOR.services_by_name["AuditService"].full_name
DIRECTORY_SERVICE: Final = audit_pb2.DESCRIPTOR.services_by_name["DirectoryService"].full_name
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
        except ValueError as e:  # a gateway newer than this client, or a broken one
            raise CodecError(f"stats row has unknown {cls.__name__} value {value}") from e

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


# --- AuditService requests and responses -------------------------------------------

# (index, exact leaf bytes, the record they decode to): one logged record.
Logged = tuple[int, bytes, AuditRecord]


class QueryParams(NamedTuple):
    """What one AuditService.Query asks: filters and paging (``page_size`` 0 = the server's default)."""

    filters: AuditFilter
    page_size: int
    page_token: str | None
    oldest_first: bool


def _filter_enum(cls: type[_E], value: str | enum.Enum | None) -> int:
    """A filter value (label as stored, or the enum) as its wire number; None is 0 (any)."""
    if value is None:
        return 0
    try:
        return int(cls(value.value) if isinstance(value, enum.Enum) else cls[value.upper().replace("-", "_")])
    except (KeyError, ValueError) as e:
        raise CodecError(f"unknown {cls.__name__} {value!r} in the audit filter") from e


def _enum_or_any(cls: type[_E], value: int) -> _E | None:
    """A filter value from its wire number (0 = any); the store matches enums by label."""
    if not value:
        return None
    try:
        return cls(value)
    except ValueError as e:
        raise CodecError(f"unknown {cls.__name__} {value}") from e


def query_request_to_pb(
    filters: AuditFilter | None, *, page_size: int = 0, page_token: str = "", oldest_first: bool = False
) -> audit_pb2.QueryRequest:
    f = filters or AuditFilter()
    return audit_pb2.QueryRequest(
        from_ms=f.since_ms or 0,
        to_ms=f.until_ms or 0,
        sender=f.sender or "",
        recipient=f.recipient or "",
        kind=_filter_enum(Kind, f.kind),  # type: ignore[arg-type]
        priority=_filter_enum(Priority, f.priority),  # type: ignore[arg-type]
        verdict=_filter_enum(Verdict, f.verdict),  # type: ignore[arg-type]
        reason=_filter_enum(Reason, f.reason),  # type: ignore[arg-type]
        case_id=f.case_id or "",
        message_id=f.message_id or "",
        page_size=page_size,
        page_token=page_token,
        oldest_first=oldest_first,
    )


def query_request_from_pb(r: audit_pb2.QueryRequest) -> QueryParams:
    filters = AuditFilter(
        since_ms=r.from_ms or None,
        until_ms=r.to_ms or None,
        verdict=_enum_or_any(Verdict, r.verdict),
        reason=_enum_or_any(Reason, r.reason),
        message_id=r.message_id or None,
        sender=r.sender or None,
        recipient=r.recipient or None,
        kind=_enum_or_any(Kind, r.kind),
        priority=_enum_or_any(Priority, r.priority),
        case_id=r.case_id or None,
    )
    return QueryParams(filters, r.page_size, r.page_token or None, r.oldest_first)


def logged_record_to_pb(stored: StoredEntry) -> audit_pb2.LoggedRecord:
    return audit_pb2.LoggedRecord(
        index=stored.index, entry=stored.entry, record=record_to_pb(decode_record(stored.entry))
    )


def _logged_from_pb(m: audit_pb2.LoggedRecord) -> Logged:
    """The exact leaf bytes are the truth; the record is decoded from them, not from ``m.record``."""
    return m.index, m.entry, decode_record(m.entry)


def query_response_to_pb(page: AuditPage) -> audit_pb2.QueryResponse:
    return audit_pb2.QueryResponse(
        records=[logged_record_to_pb(r) for r in page.records], next_page_token=page.next_page_token or ""
    )


def query_response_from_pb(m: audit_pb2.QueryResponse) -> tuple[list[Logged], str]:
    """(the page's records, the token of the next page or "")."""
    return [_logged_from_pb(r) for r in m.records], m.next_page_token


def tail_request_to_pb(from_index: int) -> audit_pb2.TailRequest:
    return audit_pb2.TailRequest(from_index=from_index)


def tail_request_from_pb(m: audit_pb2.TailRequest) -> int:
    return m.from_index


def tail_response_to_pb(stored: StoredEntry) -> audit_pb2.TailResponse:
    return audit_pb2.TailResponse(logged_record=logged_record_to_pb(stored))


def tail_response_from_pb(m: audit_pb2.TailResponse) -> Logged:
    if not m.HasField("logged_record"):
        raise CodecError("the tail answered without a record")
    return _logged_from_pb(m.logged_record)


def tree_head_request_to_pb(size: int) -> audit_pb2.GetTreeHeadRequest:
    return audit_pb2.GetTreeHeadRequest(tree_size=size)


def tree_head_request_from_pb(m: audit_pb2.GetTreeHeadRequest) -> int:
    """The size asked for (0 = the current size)."""
    return m.tree_size


def tree_head_response_to_pb(s: SignedTreeHead) -> audit_pb2.GetTreeHeadResponse:
    return audit_pb2.GetTreeHeadResponse(signed_tree_head=signed_tree_head_to_pb(s))


def tree_head_response_from_pb(m: audit_pb2.GetTreeHeadResponse) -> SignedTreeHead:
    if not m.HasField("signed_tree_head"):
        raise CodecError("the gateway answered without a signed tree head")
    return signed_tree_head_from_pb(m.signed_tree_head)


def inclusion_proof_request_to_pb(index: int, size: int) -> audit_pb2.GetInclusionProofRequest:
    return audit_pb2.GetInclusionProofRequest(index=index, tree_size=size)


def inclusion_proof_request_from_pb(m: audit_pb2.GetInclusionProofRequest) -> tuple[int, int]:
    """(leaf index, tree size; 0 = the current size)."""
    return m.index, m.tree_size


def inclusion_proof_response_to_pb(
    index: int, size: int, proof: Sequence[bytes], root: bytes
) -> audit_pb2.GetInclusionProofResponse:
    return audit_pb2.GetInclusionProofResponse(index=index, tree_size=size, proof=proof, root=root)


def inclusion_proof_response_from_pb(m: audit_pb2.GetInclusionProofResponse) -> tuple[list[bytes], bytes]:
    """(the audit path, the root it leads to)."""
    return list(m.proof), m.root


def consistency_proof_request_to_pb(m: int, n: int) -> audit_pb2.GetConsistencyProofRequest:
    return audit_pb2.GetConsistencyProofRequest(from_size=m, to_size=n)


def consistency_proof_request_from_pb(r: audit_pb2.GetConsistencyProofRequest) -> tuple[int, int]:
    return r.from_size, r.to_size


def consistency_proof_response_to_pb(proof: Sequence[bytes]) -> audit_pb2.GetConsistencyProofResponse:
    return audit_pb2.GetConsistencyProofResponse(proof=proof)


def consistency_proof_response_from_pb(m: audit_pb2.GetConsistencyProofResponse) -> list[bytes]:
    return list(m.proof)


def stats_request_to_pb(from_ms: int, to_ms: int) -> audit_pb2.StatsRequest:
    return audit_pb2.StatsRequest(from_ms=from_ms, to_ms=to_ms)


def stats_request_from_pb(m: audit_pb2.StatsRequest) -> tuple[int | None, int | None]:
    """(from ms, to ms); None where the request left the bound open."""
    return m.from_ms or None, m.to_ms or None


def add_cosignature_request_to_pb(size: int, cosignature: Cosignature) -> audit_pb2.AddCosignatureRequest:
    return audit_pb2.AddCosignatureRequest(tree_size=size, cosignature=cosignature_to_pb(cosignature))


def add_cosignature_request_from_pb(m: audit_pb2.AddCosignatureRequest) -> tuple[int, Cosignature]:
    return m.tree_size, cosignature_from_pb(m.cosignature)


def add_cosignature_response_to_pb() -> audit_pb2.AddCosignatureResponse:
    return audit_pb2.AddCosignatureResponse()


# --- DirectoryService requests and responses ---------------------------------------
# The signed directory travels as the exact SignedDirectory bytes the authorities
# produced; its signatures cover the inner directory bytes, which parsing keeps.


def _signed_directory_pb(signed: bytes) -> directory_pb2.SignedDirectory:
    return parse_limited(
        directory_pb2.SignedDirectory(), signed, MAX_SIGNED_DIRECTORY_BYTES, "signed directory"
    )


def directory_request_to_pb() -> audit_pb2.GetDirectoryRequest:
    return audit_pb2.GetDirectoryRequest()


def directory_response_to_pb(signed: bytes) -> audit_pb2.GetDirectoryResponse:
    return audit_pb2.GetDirectoryResponse(signed_directory=_signed_directory_pb(signed))


def directory_response_from_pb(m: audit_pb2.GetDirectoryResponse) -> bytes:
    """The signed directory as bytes (``exchange.core.directory.SignedDirectory.from_bytes`` reads them)."""
    return m.signed_directory.SerializeToString()


def publish_directory_request_to_pb(signed: bytes) -> audit_pb2.PublishDirectoryRequest:
    """``CodecError`` (or ``OversizeError``) when ``signed`` is not a signed directory's bytes."""
    return audit_pb2.PublishDirectoryRequest(signed_directory=_signed_directory_pb(signed))


def publish_directory_request_from_pb(m: audit_pb2.PublishDirectoryRequest) -> bytes:
    return m.signed_directory.SerializeToString()


def publish_directory_response_to_pb(version: int) -> audit_pb2.PublishDirectoryResponse:
    return audit_pb2.PublishDirectoryResponse(version=version)


def publish_directory_response_from_pb(m: audit_pb2.PublishDirectoryResponse) -> int:
    """The version the gateway adopted."""
    return m.version
