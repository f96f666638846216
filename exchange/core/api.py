"""Domain types of the office node's agency API (ExchangeService).

What agency systems send and get back, independent of gRPC: the servicer
and the client SDK both speak these; ``exchange.core.codec.service`` maps them to
and from the wire.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from exchange.core.bounds import (
    MAX_ATTACHMENTS,
    MAX_CASE_ID_LEN,
    MAX_IDEMPOTENCY_KEY_LEN,
    MAX_RECIPIENTS,
    check_count,
    check_text,
)
from exchange.core.envelope import SignedStatement
from exchange.core.errors import CodecError
from exchange.core.ids import check_message_id
from exchange.core.model import (
    Body,
    Handling,
    Kind,
    Priority,
    Reason,
    ReceiptState,
    check_attachment_id,
    check_id,
)

__all__ = [
    "AttachmentRef",
    "CaseEntry",
    "Delivery",
    "MessageStatus",
    "OfficeInfo",
    "OfficeList",
    "RecipientStatus",
    "SendRequest",
    "SendResult",
]


@dataclass(frozen=True)
class SendRequest:
    body: Body
    recipients: tuple[str, ...]
    case_id: str = ""
    in_reply_to: str = ""
    ttl_s: int = 0  # 0 = the directory's maximum
    handling: Handling = Handling.OFFICIAL
    idempotency_key: str = ""
    attachments: tuple[str, ...] = ()  # ids of attachments uploaded to this office

    def __post_init__(self) -> None:
        # Every field an agency controls is bounded here, so the office refuses it with
        # INVALID_ARGUMENT naming the field and the limit, before anything is sealed.
        if not self.recipients:
            raise ValueError("name at least one recipient office")
        check_count("recipients", len(self.recipients), MAX_RECIPIENTS)
        for recipient in self.recipients:
            check_id(recipient, "recipient")
        check_text("case_id", self.case_id, MAX_CASE_ID_LEN, one_line=True)
        if self.in_reply_to:
            try:
                check_message_id(self.in_reply_to)
            except CodecError:
                raise ValueError("in_reply_to is not a canonical UUIDv7 message id") from None
        check_text("idempotency_key", self.idempotency_key, MAX_IDEMPOTENCY_KEY_LEN, one_line=True)
        check_count("attachments", len(self.attachments), MAX_ATTACHMENTS)
        for attachment_id in self.attachments:
            check_attachment_id(attachment_id)
        if len(set(self.attachments)) != len(self.attachments):
            raise ValueError("attachment ids repeat")
        if len(set(self.recipients)) != len(self.recipients):
            raise ValueError("recipients repeat")
        if self.ttl_s < 0:
            raise ValueError("ttl must not be negative")


@dataclass(frozen=True)
class AttachmentRef:
    """An uploaded (or received) attachment as agency systems see it: no key, no chunks."""

    id: str
    name: str
    media_type: str
    size: int
    sha256: bytes


@dataclass(frozen=True)
class SendResult:
    message_id: str
    accepted: SignedStatement | None = None


@dataclass(frozen=True)
class Delivery:
    cursor: int
    message_id: str
    sender: str
    recipients: tuple[str, ...]
    kind: Kind
    priority: Priority
    case_id: str
    in_reply_to: str
    created_ms: int
    delivered_ms: int
    body: Body
    log_index: int
    read: bool = False


@dataclass(frozen=True)
class RecipientStatus:
    recipient: str
    state: ReceiptState | None  # highest receipt state reached; None if none yet
    rejection: Reason | None = None
    detail: str = ""

    @property
    def label(self) -> str:
        if self.rejection is not None:
            return "REJECTED"
        return self.state.name if self.state else "PENDING"


@dataclass(frozen=True)
class MessageStatus:
    message_id: str
    recipients: tuple[RecipientStatus, ...]
    statements: tuple[SignedStatement, ...] = ()
    rejected: bool = False


@dataclass(frozen=True)
class OfficeInfo:
    id: str
    country: str
    agency: str
    city: str
    display_name: str
    may_send: tuple[Kind, ...] = ()


@dataclass(frozen=True)
class OfficeList:
    directory_version: int
    self_id: str
    offices: tuple[OfficeInfo, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class CaseEntry:
    message_id: str
    sender: str
    recipients: tuple[str, ...]
    kind: Kind
    created_ms: int
    body: Body
    outgoing: bool
