"""How `liaison audit` shows records and statistics: JSON objects for scripts, lines for people.

Pure formatting of values the gateway's AuditClient returned; no I/O, no
verification (that is :mod:`gateway.audit.verify`).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from gateway.audit.merkle import leaf_hash

if TYPE_CHECKING:
    from gateway.audit.query import StatsRow
    from gateway.client import LoggedRecord

__all__ = ["iso", "label", "record_json", "record_row", "stats_json", "stats_lines"]


def iso(ms: int) -> str:
    """Milliseconds since the epoch as ISO-8601 UTC with a Z."""
    return (
        dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def label(value: Any) -> str:
    """An enum member as its label (``case-message``); None as ""."""
    return value.name.lower().replace("_", "-") if value is not None else ""


def record_json(r: LoggedRecord) -> dict[str, Any]:
    """A logged record for scripts: every field, ``entry`` = base64 of the exact leaf bytes."""
    rec = r.record
    return {
        "index": r.index,
        "entry": base64.b64encode(r.entry).decode("ascii"),
        "leaf_hash": leaf_hash(r.entry).hex(),
        "at_ms": rec.at_ms,
        "at": iso(rec.at_ms),
        "verdict": rec.verdict.label,
        "reason": label(rec.reason),
        "detail": rec.detail,
        "message_id": rec.message_id,
        "sender": rec.sender,
        "recipients": list(rec.recipients),
        "kind": label(rec.kind),
        "priority": label(rec.priority),
        "case_id": rec.case_id,
        "created_ms": rec.created_ms,
        "expires_ms": rec.expires_ms,
        "envelope_size": rec.envelope_size,
        "header_digest": rec.header_digest.hex(),
        "ciphertext_digest": rec.ciphertext_digest.hex(),
        "suite": label(rec.suite),
        "receipt_state": label(rec.receipt_state),
        "receipt_signer": rec.receipt_signer,
        "source_seq": rec.source_seq,
    }


def record_row(r: LoggedRecord) -> str:
    """A logged record as one terminal line."""
    rec = r.record
    if rec.reason is not None:
        extra = f"  {label(rec.reason)}: {rec.detail}".rstrip(": ")
    elif rec.receipt_state is not None:
        extra = f"  {label(rec.receipt_state)} by {rec.receipt_signer or rec.sender}"
    else:
        extra = ""
    to = ",".join(rec.recipients) or "-"
    return (
        f"#{r.index:<6} {iso(rec.at_ms)}  {rec.verdict.label:8} {label(rec.kind) or '-':16} "
        f"{label(rec.priority) or '-':9} {rec.sender} -> {to}  {rec.message_id or '-'}{extra}"
    )


def _totals(rows: Sequence[StatsRow]) -> tuple[dict[tuple[str, str], int], dict[str, int], dict[str, int]]:
    by_pair: dict[tuple[str, str], int] = {}
    by_kind: dict[str, int] = {}
    by_verdict: dict[str, int] = {}
    for r in rows:
        by_pair[(r.sender, r.recipient)] = by_pair.get((r.sender, r.recipient), 0) + r.count
        by_kind[r.kind or "-"] = by_kind.get(r.kind or "-", 0) + r.count
        by_verdict[r.verdict] = by_verdict.get(r.verdict, 0) + r.count
    return by_pair, by_kind, by_verdict


def stats_json(rows: Sequence[StatsRow]) -> dict[str, Any]:
    """Every row, and totals per office pair, kind and verdict."""
    by_pair, by_kind, by_verdict = _totals(rows)
    fields = ("sender", "recipient", "kind", "verdict", "reason", "count")
    return {
        "rows": [{k: getattr(r, k) for k in fields} for r in rows],
        "by_pair": [{"sender": s, "recipient": t, "count": c} for (s, t), c in sorted(by_pair.items())],
        "by_kind": by_kind,
        "by_verdict": by_verdict,
        "total": sum(r.count for r in rows),
    }


def stats_lines(rows: Sequence[StatsRow]) -> list[str]:
    """A table, largest count first, and a total line."""
    _, _, by_verdict = _totals(rows)
    lines = [f"{'sender':24} {'recipient':24} {'kind':16} {'verdict':9} {'reason':18} {'count':>7}"]
    for r in sorted(rows, key=lambda r: -r.count):
        lines.append(
            f"{r.sender:24} {r.recipient or '-':24} {r.kind or '-':16} {r.verdict:9} "
            f"{r.reason or '-':18} {r.count:>7}"
        )
    lines.append(f"total {sum(r.count for r in rows)}; by verdict: {json.dumps(by_verdict)}")
    return lines
