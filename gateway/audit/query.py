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

from exchange.core.bounds import MAX_CASE_ID_LEN, MAX_OFFICE_ID_LEN

__all__ = [
    "MAX_APPEND_BATCH",
    "MAX_ENTRY_BYTES",
    "MAX_META_TEXT_LEN",
    "MAX_PAGE_SIZE",
    "MAX_RECORD_BYTES",
    "MAX_SIGNED_BYTES",
    "MAX_WITNESS_LEN",
    "META_COLUMNS",
    "AuditFilter",
    "AuditPage",
    "StatsRow",
    "StoredEntry",
]

# One set of limits for what the store accepts and what every reader (Query, Tail, proofs,
# export, verify, the witness, the console) decodes: a record the store takes is readable.
# The largest record the gateway can build (every field at its bound in exchange.core.bounds:
# MAX_RECIPIENTS ids of MAX_OFFICE_ID_LEN, a case id of MAX_CASE_ID_LEN, a detail of
# MAX_DETAIL_LEN) is about 10 KiB; tests/unit/test_poison_bounds.py builds it.
MAX_RECORD_BYTES: Final = 64 * 1024
MAX_ENTRY_BYTES: Final = MAX_RECORD_BYTES
# The longest indexed text column a record can fill (case id; ids and labels are shorter).
MAX_META_TEXT_LEN: Final = max(MAX_CASE_ID_LEN, MAX_OFFICE_ID_LEN)
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
