"""What the audit stores answer: stored entries, query filters, pages and statistics rows.

Plain frozen dataclasses and the limits every store enforces, shared by the
stores (:mod:`gateway.audit.sqlite`, :mod:`gateway.audit.postgres`), the
gateway's services, the console and the codec. No database here: a module
that only reads or verifies audit data imports these, never a driver.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

__all__ = [
    "MAX_APPEND_BATCH",
    "MAX_ENTRY_BYTES",
    "MAX_PAGE_SIZE",
    "MAX_SIGNED_BYTES",
    "MAX_WITNESS_LEN",
    "META_COLUMNS",
    "AuditFilter",
    "AuditPage",
    "StatsRow",
    "StoredEntry",
]

MAX_ENTRY_BYTES: Final = 1 << 20
MAX_APPEND_BATCH: Final = 100_000
MAX_PAGE_SIZE: Final = 1000
MAX_SIGNED_BYTES: Final = 64 * 1024  # a tree head or a cosignature
MAX_WITNESS_LEN: Final = 255
META_COLUMNS: Final = (
    "at_ms", "verdict", "reason", "message_id", "sender", "recipients", "kind", "priority", "case_id",
)  # fmt: skip
"""The indexed metadata an entry may carry, in column order."""


@dataclass(frozen=True, slots=True)
class StoredEntry:
    """One stored entry. Text metadata is stored as given; enums as their label (``case-message``)."""

    index: int
    entry: bytes
    leaf_hash: bytes
    at_ms: int | None
    verdict: str | None
    reason: str | None
    message_id: str | None
    sender: str | None
    recipients: tuple[str, ...]
    kind: str | None
    priority: str | None
    case_id: str | None


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """Query filters; ``None`` means "any". Time range is ``since_ms <= at_ms < until_ms``.

    Text filters take a str or an enum (matched by its label, as stored).
    """

    since_ms: int | None = None
    until_ms: int | None = None
    verdict: str | enum.Enum | None = None
    reason: str | enum.Enum | None = None
    message_id: str | None = None
    sender: str | None = None
    recipient: str | None = None
    kind: str | enum.Enum | None = None
    priority: str | enum.Enum | None = None
    case_id: str | None = None


@dataclass(frozen=True, slots=True)
class StatsRow:
    """How many records one (sender, recipient, kind, verdict, reason) has; labels as stored."""

    sender: str
    recipient: str
    kind: str
    verdict: str
    reason: str
    count: int


@dataclass(frozen=True, slots=True)
class AuditPage:
    """One page of a query; ``next_page_token`` is None on the last page."""

    records: tuple[StoredEntry, ...]
    next_page_token: str | None
