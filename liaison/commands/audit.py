"""`liaison audit …`: the embassy operators' view of the gateway's audit log.

Subcommands: ``tail | query | show | head | proof | consistency | verify |
export | verify-bundle | stats``. Each talks to the gateway's AuditService at
``--endpoint host:port`` (``--ca/--cert/--key`` for mutual TLS) or in a running
lab (``--lab DIR``: ``gateway.grpc`` and ``operator_tls`` of ``DIR/lab.json``);
``verify-bundle`` works offline on a file. ``--json`` prints machine-readable
output: one object, or one object per line for record listings.

Proofs are checked here, on the operator's machine, before anything is shown
as holding: ``proof`` and ``consistency`` exit 2 when the gateway's proof does
not verify; ``verify``, ``export`` and ``verify-bundle`` print ONE verdict line
(``OK: …`` exit 0, ``FAILED: …`` exit 1). No message content exists in the log,
so none can be printed.

This module parses arguments, fetches from the gateway and prints; every check
is :mod:`gateway.audit.verify`'s (the same workflow the bundle verifier runs),
and the output formats are :mod:`liaison.commands.audit_format`'s.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from exchange.client.connection import explicit_tls, lab_gateway
from exchange.core.clock import now_ms
from exchange.core.errors import ConfigError, LiaisonError, RemoteError
from liaison.commands.audit_format import iso, label, record_json, record_row, stats_json, stats_lines
from liaison.terminal import echo

if TYPE_CHECKING:
    from exchange.core.directory import SignedDirectory
    from gateway.audit.treehead import SignedTreeHead
    from gateway.client import AuditClient, LoggedRecord

__all__ = ["register"]

PAGE_SIZE = 200
DEFAULT_LIMIT = 50
DEFAULT_SAMPLE = 16
DEFAULT_SCAN = 64
_UNREACHABLE = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "UNAUTHENTICATED", "CANCELLED")


# --- connection and argument parsing -----------------------------------------------


def _client(args: argparse.Namespace) -> AuditClient:
    from gateway.client import AuditClient

    if args.endpoint:
        return AuditClient(
            args.endpoint, tls=explicit_tls(args.ca, args.cert, args.key), timeout=args.timeout
        )
    if args.lab:
        target, tls = lab_gateway(args.lab)
        return AuditClient(target, tls=tls, timeout=args.timeout)
    raise ConfigError("give --endpoint HOST:PORT or --lab DIR")


def _ms(text: str | None) -> int:
    """ISO-8601 (naive = UTC) or milliseconds since the epoch; None/"" is 0 (no bound)."""
    if not text:
        return 0
    if text.isdigit():
        return int(text)
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"not an ISO-8601 time or milliseconds: {text!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp() * 1000)


def _enum_arg(cls: Any, text: str | None, what: str) -> Any:
    """The enum member ``text`` names ("case-message"); None for no text (any)."""
    if not text:
        return None
    try:
        return cls[text.upper().replace("-", "_")]
    except KeyError:
        names = ", ".join(label(v) for v in cls)
        raise ConfigError(f"unknown {what} {text!r} ({names})") from None


def _verdict(args: argparse.Namespace, ok: bool, line: str, extra: dict[str, Any] | None = None) -> int:
    text = f"{'OK' if ok else 'FAILED'}: {line}"
    if getattr(args, "json", False):
        print(json.dumps({"ok": ok, "verdict": text, **(extra or {})}))
    else:
        echo(text)
    return 0 if ok else 1


def _checking(args: argparse.Namespace, fn: Any) -> int:
    """Run a check; a broken proof or signature is FAILED (exit 1), an unreachable gateway exit 2."""
    try:
        ok_line, extra = fn()
    except ConfigError:
        raise
    except RemoteError as e:
        if e.status in _UNREACHABLE:
            raise
        return _verdict(args, False, f"gateway refused: {e}")
    except LiaisonError as e:
        return _verdict(args, False, str(e))
    return _verdict(args, True, ok_line, extra)


# --- records -------------------------------------------------------------------------


def _print_record(args: argparse.Namespace, r: LoggedRecord) -> None:
    if args.json:
        print(json.dumps(record_json(r)), flush=True)
    else:
        echo(record_row(r), flush=True)


def _query(args: argparse.Namespace) -> int:
    from exchange.core.model import Kind, Priority, Reason
    from gateway.audit.record import Verdict
    from gateway.client import AuditFilter

    filters = AuditFilter(
        since_ms=_ms(args.since) or None,
        until_ms=_ms(args.until) or None,
        sender=args.sender or None,
        recipient=args.recipient or None,
        kind=_enum_arg(Kind, args.kind, "kind"),
        priority=_enum_arg(Priority, args.priority, "priority"),
        verdict=_enum_arg(Verdict, args.verdict, "verdict"),
        reason=_enum_arg(Reason, args.reason, "reason"),
        case_id=args.case or None,
        message_id=args.message or None,
    )
    count, token = 0, ""
    with _client(args) as client:
        while True:
            want = min(args.page_size, args.limit - count) if args.limit else args.page_size
            records, token = client.query(
                filters, page_size=want, page_token=token, oldest_first=args.oldest_first
            )
            for r in records:
                _print_record(args, r)
            count += len(records)
            if not token or (args.limit and count >= args.limit):
                break
    if not args.json:
        more = " (more: raise --limit)" if token else ""
        print(f"{count} record(s){more}", file=sys.stderr)
    return 0


def _tail(args: argparse.Namespace) -> int:
    count = 0
    with _client(args) as client:
        start = args.from_index if args.from_index is not None else client.size()
        for r in client.tail(start, idle_s=args.wait):
            _print_record(args, r)
            count += 1
            if args.limit and count >= args.limit:
                break
    if not args.json:
        print(f"{count} record(s)", file=sys.stderr)
    return 0


def _show(args: argparse.Namespace) -> int:
    with _client(args) as client:
        r = client.record(args.index)
    if args.json:
        print(json.dumps(record_json(r)))
        return 0
    for key, value in record_json(r).items():
        if value not in ("", [], 0) or key in ("index", "verdict"):
            shown = ", ".join(value) if isinstance(value, list) else value
            echo(f"{key:18} {shown}")
    return 0


# --- heads and proofs ----------------------------------------------------------------


def _directory(client: AuditClient, pinned: str | None) -> SignedDirectory:
    """The gateway's directory, verified against a pinned one, or against its own authorities."""
    from gateway.audit.verify import trusted_directory

    pinned_bytes = None
    if pinned:
        try:
            pinned_bytes = Path(pinned).read_bytes()
        except OSError as e:
            raise ConfigError(f"cannot read pinned directory {pinned}: {e.strerror or e}") from e
    return trusted_directory(client.directory(), pinned_bytes)


def _head(args: argparse.Namespace) -> int:
    from gateway.audit.bundle import head_to_json
    from gateway.audit.treehead import verify_cosignature

    with _client(args) as client:
        head = client.tree_head(args.size)
        directory = _directory(client, args.directory).directory
    try:
        head.verify(directory)
    except LiaisonError as e:
        return _verdict(args, False, f"tree head of size {head.tree_head.size}: {e}")
    if args.json:
        print(json.dumps(head_to_json(head)))
        return 0
    th = head.tree_head
    echo(f"tree head   size {th.size}  root {th.root.hex()}")
    echo(f"signed      {iso(th.timestamp_ms)} by {th.gateway} (signature verified)")
    for s in head.signatures:
        echo(f"  {s.algorithm.name.lower():10} key {s.key_id}")
    for c in head.cosignatures:
        try:
            verify_cosignature(head, c, directory)
            state = "verified"
        except LiaisonError as e:
            state = f"INVALID: {e}"
        echo(f"co-signed   {c.witness} key {c.signature.key_id} ({state})")
    if not head.cosignatures:
        echo("co-signed   by no witness")
    return 0


def _signed_or_none(client: AuditClient, size: int) -> SignedTreeHead | None:
    return client.find_tree_head(size) if size else client.tree_head()


def _proof(args: argparse.Namespace) -> int:
    from gateway.audit.verify import verify_record_inclusion

    with _client(args) as client:
        head = _signed_or_none(client, args.size)
        size = head.tree_head.size if head else args.size
        proof, root = client.inclusion_proof(args.index, size)
        signed = (head, _directory(client, None).directory) if head is not None else None
        entry = client.record(args.index).entry
    leaf = verify_record_inclusion(entry, args.index, size, proof, root, signed=signed)
    if args.json:
        out = {"index": args.index, "size": size, "leaf_hash": leaf.hex(), "signed": head is not None}
        print(json.dumps({"proof": [p.hex() for p in proof], "root": root.hex(), **out}))
        return 0
    against = "signed tree head" if head else "UNSIGNED root (no tree head stored for this size)"
    echo(f"record {args.index} is included in tree size {size}: verified against the {against}")
    echo(f"leaf  {leaf.hex()}")
    echo(f"root  {root.hex()}")
    for i, p in enumerate(proof):
        echo(f"  [{i}] {p.hex()}")
    return 0


def _root(client: AuditClient, size: int) -> tuple[bytes, bool]:
    head = client.find_tree_head(size)
    if head is not None:
        return head.tree_head.root, True
    return client.inclusion_proof(0, size)[1], False


def _consistency(args: argparse.Namespace) -> int:
    from gateway.audit.merkle import verify_consistency

    with _client(args) as client:
        to_size = args.to_size or client.tree_head().tree_head.size
        proof = client.consistency_proof(args.from_size, to_size)
        (r1, s1), (r2, s2) = _root(client, args.from_size), _root(client, to_size)
    verify_consistency(args.from_size, to_size, proof, r1, r2)
    if args.json:
        print(
            json.dumps(
                {
                    "proof": [p.hex() for p in proof],
                    "from": args.from_size,
                    "to": to_size,
                    "from_root": r1.hex(),
                    "to_root": r2.hex(),
                    "signed": {"from": s1, "to": s2},
                }
            )
        )
        return 0
    echo(f"tree size {to_size} extends tree size {args.from_size}: verified")
    for size, root, signed in ((args.from_size, r1, s1), (to_size, r2, s2)):
        echo(f"  size {size:<8} root {root.hex()} ({'signed' if signed else 'UNSIGNED'})")
    for i, p in enumerate(proof):
        echo(f"  [{i}] {p.hex()}")
    return 0


# --- verify, export, verify-bundle ----------------------------------------------------


def _known_heads(paths: list[str] | None) -> list[SignedTreeHead]:
    """Heads an operator saved earlier (`liaison audit head --json > FILE`): they pin history."""
    from gateway.audit.bundle import head_from_json

    heads = []
    for path in paths or ():
        try:
            obj = json.loads(Path(path).read_text())
        except ValueError as e:
            raise ConfigError(f"{path} is not a JSON tree head: {e}") from e
        if not isinstance(obj, dict):
            raise ConfigError(f"{path} is not a JSON tree head")
        heads.append(head_from_json(obj, f"tree head in {path}"))
    return heads


def _collect(
    client: AuditClient, args: argparse.Namespace
) -> tuple[list[SignedTreeHead], list[tuple[int, bytes]], dict[tuple[int, int], list[bytes]]]:
    """Signed heads (newest, --from-size, --known-head, stored ones found by probing), records, proofs."""
    newest = client.tree_head(args.to_size)
    n = newest.tree_head.size
    heads = {h.tree_head.size: h for h in _known_heads(args.known_head)}
    heads[n] = newest
    low = args.from_size or 1
    if args.from_size:
        found = client.find_tree_head(args.from_size)
        if found is None:
            raise ConfigError(f"no signed tree head for size {args.from_size} (see `liaison audit head`)")
        heads[args.from_size] = found
    # No RPC lists stored heads: probe the most recent sizes (co-signed heads live there).
    for size in range(n - 1, max(low, n - args.scan_heads) - 1, -1):
        if size not in heads and (head := client.find_tree_head(size)) is not None:
            heads[size] = head
    wanted = max(heads)  # a saved head beyond the log's end is a truncation: verify_log reports it
    entries: list[tuple[int, bytes]] = []
    for r in client.all_records():
        if r.index >= wanted:
            break
        entries.append((r.index, r.entry))
    sizes = sorted(heads)
    proofs = {(a, b): client.consistency_proof(a, b) for a, b in itertools.pairwise(sizes) if 0 < a < b <= n}
    return [heads[s] for s in sizes], entries, proofs


def _cosigned(heads: list[SignedTreeHead]) -> str:
    parts = [
        f"size {h.tree_head.size} by {', '.join(sorted({c.witness for c in h.cosignatures}))}"
        for h in heads
        if h.cosignatures
    ]
    return "; ".join(parts) or "no witness co-signatures"


def _verify(args: argparse.Namespace) -> int:
    from gateway.audit.verify import (
        LogEvidence,
        require_cosignatures,
        verify_audit_log,
        verify_further_proofs,
    )

    def run() -> tuple[str, dict[str, Any]]:
        with _client(args) as client:
            signed_dir = _directory(client, args.directory)
            heads, entries, proofs = _collect(client, args)
            report = verify_audit_log(LogEvidence(heads, entries, proofs), signed_dir)
            # Asked for only now that the records hold: a damaged log is reported as such.
            oldest, n = heads[0].tree_head.size, heads[-1].tree_head.size
            span_proof = {(oldest, n): client.consistency_proof(oldest, n)} if 0 < oldest < n else {}
            sample = sorted({(n - 1) * k // max(args.sample - 1, 1) for k in range(args.sample)}) if n else []
            inclusion = {i: client.inclusion_proof(i, n)[0] for i in sample}
            verify_further_proofs(heads, entries, span_proof, inclusion)
            witnessed = None
            if args.require_cosign is not None:
                witnessed = require_cosignatures(report, signed_dir.directory, args.require_cosign)
        span = f"consistency {oldest}->{n}" if oldest < n else "one head"
        line = (
            f"{n} records verified against {len(heads)} signed tree heads (sizes {oldest}..{n}), "
            f"{span}, {len(sample)} inclusion proofs; co-signed: {_cosigned(heads)}; "
            f"directory v{report.directory_version} digest {report.directory_digest}"
        )
        if witnessed is not None:
            line += f"; witnessed up to size {witnessed} ({n - witnessed} records not co-signed yet)"
        extra = {
            "size": n,
            "heads": list(report.head_sizes),
            "cosigned": {str(h.tree_head.size): [c.witness for c in h.cosignatures] for h in heads},
            "directory_digest": report.directory_digest,
        }
        return line, extra

    return _checking(args, run)


def _export(args: argparse.Namespace) -> int:
    from gateway.audit.bundle import build_bundle, verify_bundle_data, write_bundle

    out = Path(args.out)
    with _client(args) as client:
        directory = client.directory()
        heads, entries, proofs = _collect(client, args)
    bundle = build_bundle(entries, heads, proofs, directory, now_ms())
    write_bundle(out, bundle)
    print(f"wrote {out}: {len(entries)} records, {len(heads)} tree heads", file=sys.stderr)

    def run() -> tuple[str, dict[str, Any]]:
        report = verify_bundle_data(out.read_bytes())
        return f"exported {report.summary()}", {"bundle": str(out), "size": report.size}

    return _checking(args, run)


def _verify_bundle(args: argparse.Namespace) -> int:
    from gateway.audit.bundle import verify_bundle

    path = Path(args.bundle)
    if not path.is_file():
        raise ConfigError(f"no bundle file at {path}")

    def run() -> tuple[str, dict[str, Any]]:
        report = verify_bundle(path, pinned=Path(args.directory) if args.directory else None)
        extra = {
            "size": report.size,
            "heads": list(report.head_sizes),
            "cosigned": {str(s): list(w) for s, w in report.cosigned},
            "directory_digest": report.directory_digest,
        }
        return f"bundle holds: {report.summary()}", extra

    return _checking(args, run)


# --- stats ---------------------------------------------------------------------------


def _stats(args: argparse.Namespace) -> int:
    with _client(args) as client:
        rows = client.stats(_ms(args.since), _ms(args.until))
    if args.json:
        print(json.dumps(stats_json(rows)))
    else:
        for line in stats_lines(rows):
            echo(line)
    return 0


# --- parsers -------------------------------------------------------------------------


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--endpoint", help="gateway gRPC address host:port")
    p.add_argument("--ca", help="CA certificate (PEM) for mutual TLS")
    p.add_argument("--cert", help="operator certificate (PEM)")
    p.add_argument("--key", help="operator key (PEM)")
    p.add_argument("--lab", help="folder of a running `liaison lab up`")
    p.add_argument("--timeout", type=float, default=15.0, help="per-call deadline in seconds")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def _heads_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--from-size", type=int, default=0, help="also check the stored signed head of this size")
    p.add_argument("--to-size", type=int, default=0, help="newest head to use (default: the current one)")
    p.add_argument(
        "--scan-heads",
        type=int,
        default=DEFAULT_SCAN,
        help="probe this many sizes below the newest for stored heads",
    )
    p.add_argument("--directory", help="pinned signed directory to verify the gateway's directory against")
    p.add_argument(
        "--known-head",
        action="append",
        metavar="FILE",
        help="a head saved earlier with `head --json` (repeatable): the log must still extend it",
    )


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    audit = sub.add_parser("audit", help="the gateway's audit log: records, tree heads, proofs, bundles")
    cmds = audit.add_subparsers(dest="audit_command", required=True, metavar="SUBCOMMAND")

    p = cmds.add_parser("query", help="find records (newest first)")
    _common(p)
    p.add_argument("--since", help="from this time (ISO-8601, UTC if no zone; or epoch ms)")
    p.add_argument("--until", help="before this time")
    for name in ("sender", "recipient", "kind", "priority", "verdict", "reason", "case", "message"):
        p.add_argument(f"--{name}")
    p.add_argument("--limit", type=int, default=DEFAULT_LIMIT, help="at most N records (0 = all)")
    p.add_argument("--page-size", type=int, default=PAGE_SIZE, help="records per request")
    p.add_argument("--oldest-first", action="store_true")
    p.set_defaults(handler=_query)

    p = cmds.add_parser("tail", help="stream new records live")
    _common(p)
    p.add_argument("--from", dest="from_index", type=int, default=None, help="start at this index")
    p.add_argument("--wait", type=float, default=None, help="stop after SECONDS without a new record")
    p.add_argument("--limit", type=int, default=0, help="stop after N records")
    p.set_defaults(handler=_tail)

    p = cmds.add_parser("show", help="one record with its exact leaf bytes")
    _common(p)
    p.add_argument("index", type=int)
    p.set_defaults(handler=_show)

    p = cmds.add_parser("head", help="the signed tree head (verified) and its co-signatures")
    _common(p)
    p.add_argument("--size", type=int, default=0, help="a stored head of this size (default: current)")
    p.add_argument("--directory", help="pinned signed directory")
    p.set_defaults(handler=_head)

    p = cmds.add_parser("proof", help="inclusion proof of a record, verified locally")
    _common(p)
    p.add_argument("--index", type=int, required=True)
    p.add_argument("--size", type=int, default=0, help="tree size (default: current signed head)")
    p.set_defaults(handler=_proof)

    p = cmds.add_parser("consistency", help="consistency proof between two tree sizes, verified locally")
    _common(p)
    p.add_argument("--from", dest="from_size", type=int, required=True)
    p.add_argument("--to", dest="to_size", type=int, default=0, help="default: current signed head")
    p.set_defaults(handler=_consistency)

    p = cmds.add_parser("verify", help="check the log against signed tree heads; one-line verdict")
    _common(p)
    _heads_options(p)
    p.add_argument("--sample", type=int, default=DEFAULT_SAMPLE, help="inclusion proofs to check")
    p.add_argument(
        "--require-cosign",
        nargs="*",
        metavar="WITNESS",
        help="fail unless a verified head is co-signed by each WITNESS (none named: by any authority)",
    )
    p.set_defaults(handler=_verify)

    p = cmds.add_parser("export", help="write a self-contained bundle for offline verification")
    _common(p)
    _heads_options(p)
    p.add_argument("--out", required=True, help="bundle file to write (JSON)")
    p.set_defaults(handler=_export)

    p = cmds.add_parser("verify-bundle", help="check an exported bundle offline; one-line verdict")
    p.add_argument("bundle")
    p.add_argument("--directory", help="pinned signed directory (else the bundle's own, digest printed)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=_verify_bundle)

    p = cmds.add_parser("stats", help="record counts per office pair, kind and verdict")
    _common(p)
    p.add_argument("--since")
    p.add_argument("--until")
    p.set_defaults(handler=_stats)
