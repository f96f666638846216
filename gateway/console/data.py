"""The console's reads from the gateway: records, proofs, tree heads, statistics.

Blocking functions over a ``GatewayNode`` (its store is synchronous and
thread-safe); the web layer runs them in a worker thread. Each returns
plain JSON-ready values that both the HTML pages and the JSON endpoints
use. Nothing here writes, except that a record newer than every stored tree
head makes the node sign a head for the current size, as the AuditService's
GetTreeHead does on request.
"""

from __future__ import annotations

from typing import Final

from exchange.core.errors import LiaisonError
from gateway.audit.codec import decode_record, decode_signature, decode_signed_tree_head
from gateway.audit.errors import TreeHeadNotFoundError
from gateway.audit.query import AuditFilter
from gateway.audit.treehead import Cosignature, SignedTreeHead, verify_cosignature
from gateway.console.views import record_fields, row_fields, volume_chart
from gateway.node import GatewayNode

__all__ = ["head_view", "list_heads", "list_records", "record_view", "stats_view"]

RECENT_HEADS: Final = 20
# Heads are stored by size and the store cannot list them, so recent ones are
# found by looking sizes up downwards from the latest, at most this many.
HEAD_PROBE_LIMIT: Final = 512


def list_records(
    node: GatewayNode, filters: AuditFilter, page_size: int, page_token: str | None, *, details: bool = False
) -> dict[str, object]:
    """One page of records, newest first; ``details`` adds the decoded rejection detail."""
    page = node.store.query(filters, page_size=page_size, page_token=page_token)
    rows = []
    for stored in page.records:
        row = row_fields(stored)
        if details:
            try:
                row["detail"] = decode_record(stored.entry).detail
            except LiaisonError:
                row["detail"] = "(record does not decode)"
        rows.append(row)
    return {"records": rows, "next_page": page.next_page_token}


def _signed_head_json(node: GatewayNode, head: SignedTreeHead) -> dict[str, object]:
    directory = node.directory.directory
    try:
        head.verify(directory)
        signature_status = "valid"
    except LiaisonError as e:
        signature_status = f"INVALID: {e}"
    cosignatures = []
    for witness, raw in node.store.cosignatures(head.tree_head.size).items():
        entry: dict[str, object] = {"witness": witness}
        try:
            signature = decode_signature(raw)
            verify_cosignature(head, Cosignature(witness, signature), directory)
            entry.update(key_id=signature.key_id, algorithm=signature.algorithm.name, status="valid")
        except LiaisonError as e:
            entry.update(key_id="", algorithm="", status=f"INVALID: {e}")
        cosignatures.append(entry)
    th = head.tree_head
    return {
        "size": th.size,
        "root": th.root.hex(),
        "timestamp_ms": th.timestamp_ms,
        "gateway": th.gateway,
        "signatures": [{"key_id": s.key_id, "algorithm": s.algorithm.name} for s in head.signatures],
        "signature_status": signature_status,
        "cosignatures": cosignatures,
    }


def head_view(node: GatewayNode, size: int) -> dict[str, object]:
    """The stored signed head of ``size`` with its cosignatures (``TreeHeadNotFoundError`` if none)."""
    raw = node.store.tree_head(size)
    if raw is None:
        raise TreeHeadNotFoundError(f"no signed tree head for size {size}")
    return _signed_head_json(node, decode_signed_tree_head(raw))


def list_heads(node: GatewayNode) -> dict[str, object]:
    """The latest stored signed heads (newest first) and the current log size."""
    latest = node.store.latest_tree_head()
    heads: list[dict[str, object]] = []
    if latest is not None:
        size = latest[0]
        heads.append(_signed_head_json(node, decode_signed_tree_head(latest[1])))
        for probe in range(size - 1, max(size - HEAD_PROBE_LIMIT, -1), -1):
            if len(heads) >= RECENT_HEADS:
                break
            raw = node.store.tree_head(probe)
            if raw is not None:
                heads.append(_signed_head_json(node, decode_signed_tree_head(raw)))
    return {"log_size": node.store.size(), "heads": heads}


def _head_covering(node: GatewayNode, index: int) -> SignedTreeHead:
    latest = node.store.latest_tree_head()
    if latest is not None and latest[0] > index:
        return decode_signed_tree_head(latest[1])
    return node.tree_head()  # signs the current size, as GetTreeHead does


def record_view(node: GatewayNode, index: int) -> dict[str, object]:
    """A record's metadata, its exact leaf bytes and its inclusion proof against the latest head."""
    stored = node.store.entry(index)
    try:
        fields: dict[str, object] | None = record_fields(decode_record(stored.entry))
        decode_error = ""
    except LiaisonError as e:
        fields, decode_error = None, str(e)
    head = _head_covering(node, index)
    proof = node.store.inclusion_proof(index, head.tree_head.size)
    return {
        "index": index,
        "row": row_fields(stored),
        "fields": fields,
        "decode_error": decode_error,
        "entry_hex": stored.entry.hex(),
        "leaf_hash": stored.leaf_hash.hex(),
        "proof": [p.hex() for p in proof],
        "tree_head": _signed_head_json(node, head),
    }


def stats_view(node: GatewayNode, since_ms: int | None, until_ms: int | None) -> dict[str, object]:
    chart = volume_chart(node.store.stats(since_ms, until_ms))
    return {"chart": chart, "pairs": chart.as_json()}
