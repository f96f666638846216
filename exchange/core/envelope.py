"""Envelope-level domain types: header, wrapped keys, signatures, statements.

Frozen dataclasses with no protobuf and no cryptography. The types that are
signed (``Header`` inside ``Envelope``, the statement inside
``SignedStatement``) keep the exact bytes that travelled next to their parsed
form: signatures are always checked over those bytes, never over a
re-serialization. Constructors check shape invariants and raise ValueError;
the codec maps that to CodecError for bytes from the wire.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from exchange.core.bounds import (
    MAX_ATTACHMENTS,
    MAX_CASE_ID_LEN,
    MAX_KEY_ID_LEN,
    MAX_RECIPIENTS,
    MAX_SIGNING_KEY_IDS,
    check_count,
    check_text,
)
from exchange.core.errors import CodecError
from exchange.core.ids import check_message_id
from exchange.core.model import (
    Algorithm,
    Handling,
    Kind,
    Priority,
    Reason,
    ReceiptState,
    Suite,
    check_attachment_id,
    check_id,
)

if TYPE_CHECKING:
    from exchange.core.logproof import LogProof

__all__ = [
    "ENVELOPE_VERSION",
    "AttachmentDigest",
    "Envelope",
    "Header",
    "HeaderContext",
    "Receipt",
    "Rejection",
    "Routed",
    "Signature",
    "SignedStatement",
    "Statement",
    "WrappedKey",
    "check_envelope_bounds",
    "check_header_bounds",
]

ENVELOPE_VERSION: Final = 1
DIGEST_BYTES: Final = 32


@dataclass(frozen=True)
class AttachmentDigest:
    """What the signed header says about one external attachment (no key, no plaintext)."""

    id: str
    owner: str
    sealed_size: int
    chunk_count: int
    root: bytes

    def __post_init__(self) -> None:
        check_attachment_id(self.id)
        check_id(self.owner, "attachment owner")
        if self.chunk_count <= 0 or self.sealed_size < 0:
            raise ValueError("attachment chunk count must be positive")
        if len(self.root) != DIGEST_BYTES:
            raise ValueError("attachment root is not 32 bytes")


@dataclass(frozen=True)
class HeaderContext:
    """What the sender commits to; its serialized bytes are the AEAD associated data."""

    version: int
    message_id: str
    sender: str
    recipients: tuple[str, ...]
    kind: Kind
    priority: Priority
    case_id: str
    in_reply_to: str
    created_ms: int
    expires_ms: int
    handling: Handling
    suite: Suite
    signing_key_ids: tuple[str, ...]
    body_size: int
    attachments: tuple[AttachmentDigest, ...] = ()

    def __post_init__(self) -> None:
        if self.version != ENVELOPE_VERSION:
            raise ValueError(f"unsupported envelope version {self.version}")
        check_message_id(self.message_id)
        check_id(self.sender, "sender")
        if not self.recipients:
            raise ValueError("an envelope needs at least one recipient")
        for r in self.recipients:
            check_id(r, "recipient")
        if len(set(self.recipients)) != len(self.recipients):
            raise ValueError("recipients repeat")
        if self.in_reply_to:
            check_message_id(self.in_reply_to)
        if not 0 < self.created_ms < self.expires_ms:
            raise ValueError("need 0 < created_ms < expires_ms")
        if not self.signing_key_ids or len(set(self.signing_key_ids)) != len(self.signing_key_ids):
            raise ValueError("signing key ids are missing or repeat")
        if self.body_size < 0:
            raise ValueError("negative body size")
        if len({a.id for a in self.attachments}) != len(self.attachments):
            raise ValueError("attachment ids repeat")


@dataclass(frozen=True)
class WrappedKey:
    """The content key, HPKE-wrapped to one recipient's encryption key."""

    recipient: str
    key_id: str
    enc: bytes

    def __repr__(self) -> str:
        return f"WrappedKey({self.recipient}, key_id={self.key_id}, {len(self.enc)} bytes)"


@dataclass(frozen=True)
class Header:
    """The signed clear header; ``context_bytes`` are exactly what travelled."""

    context: HeaderContext
    context_bytes: bytes
    ciphertext_digest: bytes
    wrapped_keys: tuple[WrappedKey, ...]

    def __post_init__(self) -> None:
        if len(self.ciphertext_digest) != DIGEST_BYTES:
            raise ValueError("ciphertext digest is not 32 bytes")

    def wrapped_for(self, recipient: str) -> WrappedKey | None:
        return next((w for w in self.wrapped_keys if w.recipient == recipient), None)


@dataclass(frozen=True)
class Signature:
    key_id: str
    algorithm: Algorithm
    value: bytes

    def __repr__(self) -> str:
        return f"Signature({self.algorithm.name}, key_id={self.key_id})"


@dataclass(frozen=True)
class Envelope:
    """A sealed message; ``header_bytes`` are the exact bytes the signatures cover."""

    header: Header
    header_bytes: bytes
    signatures: tuple[Signature, ...]
    ciphertext: bytes

    def __repr__(self) -> str:
        c = self.header.context
        return f"Envelope({c.message_id} {c.sender}->{','.join(c.recipients)} {c.kind.label})"


@dataclass(frozen=True)
class Receipt:
    message_id: str
    state: ReceiptState
    signer: str
    at_ms: int
    header_digest: bytes
    sender: str
    recipient: str = ""
    log_index: int = 0

    def __post_init__(self) -> None:
        check_message_id(self.message_id)
        check_id(self.signer, "signer")
        if len(self.header_digest) != DIGEST_BYTES:
            raise ValueError("header digest is not 32 bytes")


@dataclass(frozen=True)
class Rejection:
    message_id: str
    reason: Reason
    detail: str
    signer: str
    at_ms: int
    header_digest: bytes
    sender: str
    log_index: int = 0

    def __post_init__(self) -> None:
        # A rejected envelope may not even parse: its id and digest can be empty.
        if self.message_id:
            check_message_id(self.message_id)
        check_id(self.signer, "signer")
        if self.header_digest and len(self.header_digest) != DIGEST_BYTES:
            raise ValueError("header digest is not 32 bytes")


Statement = Receipt | Rejection


@dataclass(frozen=True)
class SignedStatement:
    """A receipt or rejection with signatures over ``statement_bytes`` exactly."""

    statement: Statement
    statement_bytes: bytes
    signatures: tuple[Signature, ...]
    # With a STAMPED receipt from the gateway: that its audit record is in the log
    # (``exchange.core.logproof.LogProof``; travels beside the statement, never stored with it).
    proof: LogProof | None = None


@dataclass(frozen=True)
class Routed:
    """An envelope the gateway verified, audited and stamped."""

    envelope: Envelope
    stamp: SignedStatement


def check_header_bounds(ctx: HeaderContext) -> None:
    """Raise CodecError naming the field and its limit (``exchange.core.bounds``) when one is over.

    The constructor checks shape (ids, times); this checks the size of every field the
    sender controls, on the office (``seal``) and again at the gateway (``decide``), so
    a header whose audit record could not be stored or read never gets that far.
    """
    try:
        check_text("case_id", ctx.case_id, MAX_CASE_ID_LEN, one_line=True)
        check_count("recipients", len(ctx.recipients), MAX_RECIPIENTS)
        check_count("signing_key_ids", len(ctx.signing_key_ids), MAX_SIGNING_KEY_IDS)
        for key_id in ctx.signing_key_ids:
            check_text("signing key id", key_id, MAX_KEY_ID_LEN, one_line=True)
        check_count("attachments", len(ctx.attachments), MAX_ATTACHMENTS)
    except ValueError as e:
        raise CodecError(str(e)) from None


def check_envelope_bounds(envelope: Envelope) -> None:
    """``check_header_bounds`` plus the key ids of the wrapped keys and the signatures."""
    check_header_bounds(envelope.header.context)
    try:
        for w in envelope.header.wrapped_keys:
            check_text("wrapped key id", w.key_id, MAX_KEY_ID_LEN, one_line=True)
        for sig in envelope.signatures:
            check_text("signature key id", sig.key_id, MAX_KEY_ID_LEN, one_line=True)
    except ValueError as e:
        raise CodecError(str(e)) from None
