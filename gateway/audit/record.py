"""The audit record: what the gateway logs about every message and receipt.

Metadata only — ids, offices, kind, priority, times, sizes and digests — never
content. The codec turns a record into the exact bytes that become a Merkle
leaf; those bytes are stored and served as they are, never re-serialized.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from exchange.core.model import Kind, Priority, Reason, ReceiptState, Suite

__all__ = ["AuditRecord", "Verdict"]


class Verdict(enum.IntEnum):
    ACCEPTED = 1
    REJECTED = 2
    RECEIPT = 3

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class AuditRecord:
    at_ms: int
    verdict: Verdict
    sender: str
    message_id: str = ""
    recipients: tuple[str, ...] = ()
    kind: Kind | None = None
    priority: Priority | None = None
    case_id: str = ""
    created_ms: int = 0
    expires_ms: int = 0
    envelope_size: int = 0
    header_digest: bytes = b""
    ciphertext_digest: bytes = b""
    suite: Suite | None = None
    reason: Reason | None = None
    detail: str = ""
    receipt_state: ReceiptState | None = None
    receipt_signer: str = ""
    # The frame's sequence in the out stream: a redelivery has the same one, a replay a new one.
    source_seq: int = 0

    def __post_init__(self) -> None:
        if (self.verdict is Verdict.REJECTED) != (self.reason is not None):
            raise ValueError("a rejected record needs a reason, and only a rejected one")
        if (self.verdict is Verdict.RECEIPT) != (self.receipt_state is not None):
            raise ValueError("a receipt record needs a receipt state, and only a receipt one")

    def index_columns(self) -> dict[str, object]:
        """The searchable columns a store keeps beside the leaf bytes."""
        return {
            "at_ms": self.at_ms,
            "verdict": self.verdict,
            "reason": self.reason,
            "message_id": self.message_id or None,
            "sender": self.sender,
            "recipients": self.recipients,
            "kind": self.kind,
            "priority": self.priority,
            "case_id": self.case_id or None,
        }
