"""`liaison send | inbox | status | offices | case`: an agency system's commands.

Each talks to one office node through the client SDK, either at
``--endpoint host:port`` (with ``--ca/--cert/--key`` for mutual TLS) or in a
running lab (``--lab DIR --office ID``). ``--json`` prints machine-readable
output: one object, or one object per line for streams. ``status --node``
(or ``--lab DIR --name NODE``) shows any node's health instead
(``liaison.commands.nodestatus``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from exchange.client.connection import explicit_tls, lab_endpoint, lab_node
from exchange.client.sdk import Client
from exchange.core.api import Delivery, MessageStatus, SendRequest
from exchange.core.envelope import Receipt, Rejection
from exchange.core.errors import ConfigError, map_exceptions
from exchange.core.model import (
    Alert,
    AlertCategory,
    Body,
    CaseMessage,
    ConsularRequest,
    ConsularRequestType,
    Person,
    Priority,
)
from liaison.terminal import echo

__all__ = ["register"]


def _client(args: argparse.Namespace, office: str | None) -> Client:
    if args.endpoint:
        return Client(args.endpoint, tls=explicit_tls(args.ca, args.cert, args.key), timeout=args.timeout)
    if args.lab:
        if not office:
            raise ConfigError("with --lab, name the office (--office, or --from for send)")
        target, tls = lab_endpoint(Path(args.lab), office)
        return Client(target, tls=tls, timeout=args.timeout)
    raise ConfigError("give --endpoint HOST:PORT or --lab DIR")


def _parse(kind: type[Any], text: str) -> Any:
    with map_exceptions({ValueError: ConfigError}):
        return kind.parse(text)


def body_json(body: Body) -> dict[str, Any]:
    """A body as JSON for people and scripts (enum names in lower case)."""
    if isinstance(body, Alert):
        return {
            "category": body.category.name.lower().replace("_", "-"),
            "priority": body.priority.label,
            "subject": body.subject,
            "text": body.text,
            "persons": [p.full_name for p in body.persons],
        }
    if isinstance(body, CaseMessage):
        out = {"case_id": body.case_id, "thread": body.thread, "subject": body.subject, "text": body.text}
        return out | _attachments_json(body)
    return {
        "citizen": body.citizen.full_name,
        "request_type": body.request_type.name.lower().replace("_", "-"),
        "subject": body.subject,
        "text": body.text,
    }


def _attachments_json(body: Body) -> dict[str, Any]:
    """Attachments by index (what `liaison download --index` takes); none: no key at all."""
    if not body.attachments:
        return {}
    return {
        "attachments": [
            {
                "index": i,
                "name": a.name,
                "size": a.external.size if a.external else len(a.content),
                "sha256": a.sha256.hex(),
            }
            for i, a in enumerate(body.attachments)
        ]
    }


def delivery_json(d: Delivery) -> dict[str, Any]:
    b = body_json(d.body)
    return {
        "cursor": d.cursor,
        "message_id": d.message_id,
        "sender": d.sender,
        "recipients": list(d.recipients),
        "kind": d.kind.label,
        "priority": d.priority.label,
        "case_id": d.case_id,
        "in_reply_to": d.in_reply_to,
        "created_ms": d.created_ms,
        "log_index": d.log_index,
        "subject": b.get("subject", ""),
        "text": b.get("text", ""),
        "body": b,
    }


def status_json(s: MessageStatus) -> dict[str, Any]:
    return {
        "message_id": s.message_id,
        "rejected": s.rejected,
        "recipients": [
            {
                "recipient": r.recipient,
                "state": r.label,
                "rejection": r.rejection.label if r.rejection else None,
                "detail": r.detail,
            }
            for r in s.recipients
        ],
        "chain": [_statement_json(x.statement) for x in s.statements],
    }


def _statement_json(s: Receipt | Rejection) -> dict[str, Any]:
    common = {"signer": s.signer, "at_ms": s.at_ms, "log_index": s.log_index}
    if isinstance(s, Rejection):
        return {"state": "REJECTED", "rejection": s.reason.label, "detail": s.detail, **common}
    return {"state": s.state.name, "recipient": s.recipient, **common}


# --- handlers ----------------------------------------------------------------------


def _send(args: argparse.Namespace) -> int:
    recipients = tuple(r for r in args.to.split(",") if r)
    body: Body
    with map_exceptions({ValueError: ConfigError}):
        if args.kind == "alert":
            body = Alert(
                _parse(AlertCategory, args.category), _parse(Priority, args.priority), args.subject, args.text
            )
        elif args.kind == "case":
            body = CaseMessage(case_id=args.case, text=args.text, thread=args.thread, subject=args.subject)
        else:
            citizen = Person(full_name=args.citizen, nationality=args.nationality)
            body = ConsularRequest(
                citizen, _parse(ConsularRequestType, args.request_type), args.text, args.subject
            )
        request = SendRequest(
            body,
            recipients,
            case_id=getattr(args, "case", "") or "",
            in_reply_to=args.in_reply_to,
            ttl_s=args.ttl,
            idempotency_key=args.idempotency_key,
        )
    files = [Path(f) for f in args.attach]
    for f in files:
        if not f.is_file():
            raise ConfigError(f"--attach {f}: no such file")
    with _client(args, args.sender) as client:
        # Each file streams to the node (sealed chunk by chunk) before the message is sent.
        refs = [client.upload_attachment(f) for f in files]
        result = client.send(dataclasses.replace(request, attachments=tuple(r.id for r in refs)))
    if args.json:
        print(json.dumps({"message_id": result.message_id}))
    else:
        echo(f"accepted {result.message_id}")
    return 0


def _inbox(args: argparse.Namespace) -> int:
    count = 0
    with _client(args, args.office) as client:
        for delivery in client.subscribe(args.after, include_read=args.all, wait_s=args.wait):
            count += 1
            if args.json:
                print(json.dumps(delivery_json(delivery)), flush=True)
            else:
                b = body_json(delivery.body)
                summary = b.get("subject") or b.get("text", "")[:60]
                echo(
                    f"#{delivery.cursor} {delivery.priority.label.upper():9} {delivery.kind.label:16} "
                    f"from {delivery.sender}: {summary}  [{delivery.message_id}]",
                    flush=True,
                )
            if args.ack:
                client.ack(delivery.message_id)
            if args.limit and count >= args.limit:
                break
    if not args.json:
        print(f"{count} message(s)", file=sys.stderr)
    return 0


def _node_status(args: argparse.Namespace) -> int:
    """``status --node HOST:PORT`` or ``status --lab DIR --name NODE``: a node's health at a glance."""
    from liaison.commands.nodestatus import check_node, render

    metrics_url = args.metrics
    if args.node:
        target, tls = args.node, explicit_tls(args.ca, args.cert, args.key)
    elif args.lab and args.name:
        target, tls, lab_metrics = lab_node(Path(args.lab), args.name)
        metrics_url = metrics_url or lab_metrics
    else:
        raise ConfigError("give --node HOST:PORT, or --lab DIR --name NODE")
    status = check_node(target, tls=tls, metrics_url=metrics_url, timeout=args.timeout)
    print(json.dumps(status.as_json()) if args.json else render(status))
    return 0 if status.serving else 1


def _status(args: argparse.Namespace) -> int:
    if args.node or args.name:
        return _node_status(args)
    if not args.message_id:
        raise ConfigError("give a MESSAGE_ID, or --node HOST:PORT (or --lab DIR --name NODE) for a node")
    with _client(args, args.office) as client:
        status = client.status(args.message_id)
    if args.json:
        print(json.dumps(status_json(status)))
        return 0
    echo(f"message {status.message_id}{'  REJECTED' if status.rejected else ''}")
    for r in status.recipients:
        extra = f"  {r.rejection.label}: {r.detail}" if r.rejection else ""
        echo(f"  {r.recipient:24} {r.label}{extra}")
    return 0


def _download(args: argparse.Namespace) -> int:
    with _client(args, args.office) as client:
        ref = client.download_attachment(args.message_id, args.index, to=args.out)
    if args.json:
        print(json.dumps({"name": ref.name, "size": ref.size, "sha256": ref.sha256.hex(), "path": args.out}))
    else:
        echo(f"{ref.name}: {ref.size} bytes, SHA-256 verified, written to {args.out}")
    return 0


def _ack(args: argparse.Namespace) -> int:
    with _client(args, args.office) as client:
        client.ack(args.message_id)
    print(json.dumps({"message_id": args.message_id, "state": "READ"}) if args.json else "read")
    return 0


def _offices(args: argparse.Namespace) -> int:
    with _client(args, args.office) as client:
        listing = client.offices()
    if args.json:
        print(
            json.dumps(
                {
                    "directory_version": listing.directory_version,
                    "self": listing.self_id,
                    "offices": [
                        {
                            "id": o.id,
                            "country": o.country,
                            "city": o.city,
                            "name": o.display_name,
                            "may_send": [k.label for k in o.may_send],
                        }
                        for o in listing.offices
                    ],
                }
            )
        )
        return 0
    echo(f"directory v{listing.directory_version}, this office: {listing.self_id}")
    for o in listing.offices:
        kinds = ",".join(k.label for k in o.may_send) or "-"
        echo(f"  {o.id:24} {o.country:3} {o.city:10} may send: {kinds}")
    return 0


def _case(args: argparse.Namespace) -> int:
    with _client(args, args.office) as client:
        entries = client.case(args.case_id)
    for e in entries:
        line = {"message_id": e.message_id, "sender": e.sender, "outgoing": e.outgoing, **body_json(e.body)}
        if args.json:
            print(json.dumps(line))
        else:
            echo(f"{'>>' if e.outgoing else '<<'} {e.sender}: {line.get('text')}")
    return 0


# --- parsers -----------------------------------------------------------------------


def _common(p: argparse.ArgumentParser, *, office: bool = True) -> None:
    p.add_argument("--endpoint", help="office node gRPC address host:port")
    p.add_argument("--ca", help="CA certificate (PEM) for mutual TLS")
    p.add_argument("--cert", help="client certificate (PEM)")
    p.add_argument("--key", help="client key (PEM)")
    p.add_argument("--lab", help="folder of a running `liaison lab up`")
    if office:
        p.add_argument("--office", help="office id (with --lab)")
    p.add_argument("--timeout", type=float, default=15.0, help="per-call deadline in seconds")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    send = sub.add_parser("send", help="send an alert, case message or consular request")
    kinds = send.add_subparsers(dest="kind", required=True, metavar="KIND")
    for kind, help_text in (
        ("alert", "an alert"),
        ("case", "a case message"),
        ("consular", "a consular request"),
    ):
        p = kinds.add_parser(kind, help=f"send {help_text}")
        _common(p, office=False)
        p.add_argument("--from", dest="sender", help="sending office id (with --lab)")
        p.add_argument("--to", required=True, help="recipient office ids, comma-separated")
        p.add_argument("--text", required=True)
        p.add_argument("--subject", default="")
        p.add_argument("--in-reply-to", default="")
        p.add_argument("--ttl", type=int, default=0, help="seconds until expiry (0 = directory maximum)")
        p.add_argument("--idempotency-key", default="")
        p.add_argument(
            "--attach", action="append", default=[], metavar="FILE",
            help="attach a file of any size (streamed in sealed chunks); repeatable",
        )  # fmt: skip
        if kind == "alert":
            p.add_argument("--category", required=True, help="drug-trafficking, wanted-person, ...")
            p.add_argument("--priority", default="routine", help="routine, priority, immediate, flash")
            p.add_argument("--case", default="")
        elif kind == "case":
            p.add_argument("--case", required=True, help="case id")
            p.add_argument("--thread", default="")
        else:
            p.add_argument("--citizen", required=True, help="the citizen's full name")
            p.add_argument("--nationality", default="")
            p.add_argument("--request-type", default="legal-consultation")
            p.add_argument("--case", default="")
        p.set_defaults(handler=_send)

    inbox = sub.add_parser("inbox", help="stream this office's deliveries")
    _common(inbox)
    inbox.add_argument("--after", type=int, default=0, help="resume after this cursor")
    inbox.add_argument("--all", action="store_true", help="include messages already read")
    inbox.add_argument("--wait", type=float, default=None, help="stop after SECONDS without a delivery")
    inbox.add_argument("--limit", type=int, default=0, help="stop after N deliveries")
    inbox.add_argument("--ack", action="store_true", help="acknowledge (READ) each delivery")
    inbox.set_defaults(handler=_inbox)

    status = sub.add_parser(
        "status",
        help="receipt chain of a sent message, or a node's health (--node)",
        description="`status MESSAGE_ID`: the receipt chain of a sent message. "
        "`status --node HOST:PORT` (or `--lab DIR --name NODE`): a node's gRPC health per "
        "service and, with its metrics URL, key figures; exit code 1 when not SERVING.",
    )
    _common(status)
    status.add_argument("message_id", nargs="?", help="a message this office sent")
    status.add_argument("--node", help="a node's gRPC address host:port: show its health")
    status.add_argument("--name", help="with --lab: the node to show (office id, or gateway)")
    status.add_argument("--metrics", help="the node's metrics URL (http://host:port/metrics)")
    status.set_defaults(handler=_status)

    download = sub.add_parser("download", help="download a received message's attachment, verified")
    _common(download)
    download.add_argument("message_id")
    download.add_argument("--index", type=int, default=0, help="which attachment (see `inbox --json`)")
    download.add_argument("--out", required=True, help="file to write (appears only once verified)")
    download.set_defaults(handler=_download)

    ack = sub.add_parser("ack", help="acknowledge a delivered message (READ)")
    _common(ack)
    ack.add_argument("message_id")
    ack.set_defaults(handler=_ack)

    offices = sub.add_parser("offices", help="the offices this office may write to")
    _common(offices)
    offices.set_defaults(handler=_offices)

    case = sub.add_parser("case", help="all messages of a case at this office")
    _common(case)
    case.add_argument("case_id")
    case.set_defaults(handler=_case)
