"""What the console shows, as plain values: filters from a query string, record rows, the chart.

Pure: no I/O, no clock, no HTML. Query parameters come in as a mapping of
strings and leave as an ``AuditFilter`` (or a ``FilterError`` naming the bad
parameter). Records leave as dicts built from an explicit allow-list of
metadata fields, so a field added to the record later is not shown until
someone decides it may be. The gateway never holds message content; this
module makes sure nothing but metadata is ever rendered.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from exchange.core.errors import LiaisonError
from exchange.core.model import Kind, Priority, Reason
from gateway.audit.query import AuditFilter, StatsRow, StoredEntry
from gateway.audit.record import AuditRecord, Verdict

__all__ = [
    "FILTER_KEYS",
    "KIND_LABELS",
    "PRIORITY_LABELS",
    "REASON_LABELS",
    "VERDICT_LABELS",
    "Bar",
    "Chart",
    "FilterError",
    "iso_ms",
    "page_size_from",
    "parse_filters",
    "record_fields",
    "row_fields",
    "volume_chart",
]

KIND_LABELS: Final = tuple(k.label for k in Kind)
PRIORITY_LABELS: Final = tuple(p.label for p in Priority)
REASON_LABELS: Final = tuple(r.label for r in Reason)
VERDICT_LABELS: Final = tuple(v.label for v in Verdict)
FILTER_KEYS: Final = (
    "sender", "recipient", "kind", "verdict", "reason", "priority", "message_id", "case_id", "since", "until",
)  # fmt: skip
MAX_TEXT_PARAM: Final = 128
DEFAULT_PAGE_SIZE: Final = 50
MAX_CONSOLE_PAGE_SIZE: Final = 500


class FilterError(LiaisonError):
    """A console query parameter is malformed (HTTP 400)."""


def _text_param(params: Mapping[str, str], key: str) -> str | None:
    value = params.get(key, "").strip()
    if not value:
        return None
    if len(value) > MAX_TEXT_PARAM or any(c.isspace() or not c.isprintable() for c in value):
        raise FilterError(f"{key}: at most {MAX_TEXT_PARAM} printable characters without spaces")
    return value


def _choice(params: Mapping[str, str], key: str, allowed: Sequence[str]) -> str | None:
    value = params.get(key, "").strip()
    if not value:
        return None
    if value not in allowed:
        raise FilterError(f"{key}: expected one of {', '.join(allowed)}")
    return value


def _time_param(params: Mapping[str, str], key: str) -> int | None:
    """Milliseconds since the epoch, or an ISO 8601 time (a time without zone is UTC)."""
    value = params.get(key, "").strip()
    if not value:
        return None
    if value.isascii() and value.isdigit() and len(value) <= 15:
        return int(value)
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        raise FilterError(f"{key}: expected an ISO 8601 time or milliseconds since 1970") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    ms = int(when.timestamp() * 1000)
    if ms < 0:
        raise FilterError(f"{key}: before 1970")
    return ms


def parse_filters(params: Mapping[str, str]) -> AuditFilter:
    """The store filter for the console's query parameters (empty parameters mean "any")."""
    since, until = _time_param(params, "since"), _time_param(params, "until")
    if since is not None and until is not None and since >= until:
        raise FilterError("since: must be earlier than until")
    return AuditFilter(
        since_ms=since,
        until_ms=until,
        verdict=_choice(params, "verdict", VERDICT_LABELS),
        reason=_choice(params, "reason", REASON_LABELS),
        message_id=_text_param(params, "message_id"),
        sender=_text_param(params, "sender"),
        recipient=_text_param(params, "recipient"),
        kind=_choice(params, "kind", KIND_LABELS),
        priority=_choice(params, "priority", PRIORITY_LABELS),
        case_id=_text_param(params, "case_id"),
    )


def page_size_from(params: Mapping[str, str]) -> int:
    value = params.get("limit", "").strip()
    if not value:
        return DEFAULT_PAGE_SIZE
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= MAX_CONSOLE_PAGE_SIZE:
        raise FilterError(f"limit: expected 1..{MAX_CONSOLE_PAGE_SIZE}")
    return int(value)


def iso_ms(ms: int | None) -> str:
    """A UTC time for people: ``2026-11-01 10:15:02.123Z`` ("" for none)."""
    if not ms:
        return ""
    when = dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)
    return when.strftime("%Y-%m-%d %H:%M:%S.") + f"{ms % 1000:03d}Z"


def row_fields(stored: StoredEntry) -> dict[str, object]:
    """One table row from the store's indexed columns (no decoding needed)."""
    return {
        "index": stored.index,
        "at_ms": stored.at_ms,
        "at": iso_ms(stored.at_ms),
        "verdict": stored.verdict or "",
        "reason": stored.reason or "",
        "message_id": stored.message_id or "",
        "sender": stored.sender or "",
        "recipients": list(stored.recipients),
        "kind": stored.kind or "",
        "priority": stored.priority or "",
        "case_id": stored.case_id or "",
    }


def _label(value: enum.Enum | None) -> str:
    return value.name.lower().replace("_", "-") if value is not None else ""


def record_fields(record: AuditRecord) -> dict[str, object]:
    """Every metadata field of a decoded record, by an explicit allow-list (labels, hex digests)."""
    return {
        "at_ms": record.at_ms,
        "at": iso_ms(record.at_ms),
        "verdict": record.verdict.label,
        "reason": _label(record.reason),
        "detail": record.detail,
        "message_id": record.message_id,
        "sender": record.sender,
        "recipients": list(record.recipients),
        "kind": _label(record.kind),
        "priority": _label(record.priority),
        "case_id": record.case_id,
        "created_ms": record.created_ms,
        "created": iso_ms(record.created_ms),
        "expires_ms": record.expires_ms,
        "expires": iso_ms(record.expires_ms),
        "envelope_size": record.envelope_size,
        "header_digest": record.header_digest.hex(),
        "ciphertext_digest": record.ciphertext_digest.hex(),
        "suite": _label(record.suite),
        "receipt_state": _label(record.receipt_state),
        "receipt_signer": record.receipt_signer,
        "source_seq": record.source_seq,
    }


# --- the per-office-pair volume chart -------------------------------------------------

CHART_WIDTH: Final = 760
LABEL_WIDTH: Final = 330
BAR_HEIGHT: Final = 22
BAR_GAP: Final = 8
CHART_TOP: Final = 30
SERIES: Final = ("accepted", "rejected", "receipt")


@dataclass(frozen=True)
class Segment:
    series: str
    x: float
    width: float
    count: int


@dataclass(frozen=True)
class Bar:
    sender: str
    recipient: str
    y: int
    total: int
    counts: dict[str, int]
    segments: tuple[Segment, ...]


@dataclass(frozen=True)
class Chart:
    """Horizontal stacked bars, one per (sender, recipient), coordinates in SVG user units."""

    bars: tuple[Bar, ...]
    width: int
    height: int
    label_width: int
    bar_height: int
    max_total: int
    series: tuple[str, ...]

    def as_json(self) -> list[dict[str, object]]:
        return [
            {"sender": b.sender, "recipient": b.recipient, "total": b.total, **b.counts} for b in self.bars
        ]


def volume_chart(rows: Sequence[StatsRow]) -> Chart:
    """Group the store's statistics by office pair and lay the bars out (largest first)."""
    pairs: dict[tuple[str, str], dict[str, int]] = {}
    for row in rows:
        counts = pairs.setdefault((row.sender or "?", row.recipient or "?"), dict.fromkeys(SERIES, 0))
        series = row.verdict if row.verdict in SERIES else "rejected"
        counts[series] += row.count
    ordered = sorted(pairs.items(), key=lambda item: (-sum(item[1].values()), item[0]))
    max_total = max((sum(c.values()) for _, c in ordered), default=0)
    scale = (CHART_WIDTH - LABEL_WIDTH - 60) / max_total if max_total else 0.0
    bars = []
    for i, ((sender, recipient), counts) in enumerate(ordered):
        x = float(LABEL_WIDTH)
        segments = []
        for series in SERIES:
            width = counts[series] * scale
            if counts[series]:
                segments.append(Segment(series, round(x, 1), round(width, 1), counts[series]))
            x += width
        bars.append(
            Bar(sender, recipient, CHART_TOP + i * (BAR_HEIGHT + BAR_GAP), sum(counts.values()), counts,
                tuple(segments))
        )  # fmt: skip
    height = CHART_TOP + len(bars) * (BAR_HEIGHT + BAR_GAP) + 10
    return Chart(tuple(bars), CHART_WIDTH, height, LABEL_WIDTH, BAR_HEIGHT, max_total, SERIES)
