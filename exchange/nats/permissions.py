"""NATS accounts and authorization for a deployment: who may reach what (ADR 0011).

Pure: renders the ``tls`` and ``accounts`` blocks of a nats-server config
from the certificates' subject DNs; reads and writes nothing.

Isolation rests on accounts, not on subject permissions (NATS permissions
check the subject a client publishes to, never the reply subject it names,
and JetStream answers every request on that reply subject from inside its
account, where the streams capture what lands on their subjects):

- The streams and JetStream live in the ``LIAISON`` account. Only the gateway
  is a user there.
- Each office is an account of its own (named by its id) with no JetStream.
  It gets service imports from ``LIAISON`` for exactly what its node does:
  publish on its own out subject and its own attachment subjects, pull and
  inspect its own inbox consumer (and ack its deliveries), direct-get
  attachment chunks by subject, read the directory message; and a stream
  import of the directory subject. A service import rewrites the reply
  subject to a fresh ``_R_…`` subject in ``LIAISON``, so whatever reply
  subject an office names, JetStream's answer reaches only that office:
  it cannot aim an answer at a subject a stream captures.
- Another office's ack subjects, consumers, out and in subjects do not exist
  in an office's account, so no connection of that account — a client or a
  leaf node link, which nats-server exempts from permissions for
  ``$JS.ACK.…`` — can reach them.
- The office no longer creates its inbox consumer (a consumer-create request
  carries a config whose deliver subject the requester chooses): the gateway
  creates every office's consumer in ``LIAISON``.

Subject permissions stay on every user as a second, narrower line.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from exchange.core.wire import (
    ATTACH_PREFIX,
    ATTACH_STREAM,
    DIRECTORY_STREAM,
    DIRECTORY_SUBJECT,
    IN_STREAM,
    JS_API,
    OFFICE_JS_DOMAIN,
    inbox_prefix,
    office_attach_filter,
    office_durable,
    out_subject,
)

__all__ = [
    "STREAMS_ACCOUNT",
    "Service",
    "office_permissions",
    "office_services",
    "render_accounts",
    "render_tls_accounts",
]

# The account holding JetStream and every Liaison stream; no office user is in it.
STREAMS_ACCOUNT: Final = "LIAISON"


@dataclass(frozen=True)
class Service:
    """One subject ``LIAISON`` exports to one office as a service (the office publishes, LIAISON answers)."""

    subject: str  # in LIAISON, as JetStream knows it
    streamed: bool = False  # several answers per request (a pull request's messages)

    @property
    def js_api(self) -> bool:
        return self.subject.startswith(f"{JS_API}.")

    @property
    def local(self) -> str:
        """The subject in the office's account: the JetStream API addressed to ``OFFICE_JS_DOMAIN``."""
        if self.js_api:
            return f"$JS.{OFFICE_JS_DOMAIN}.API." + self.subject[len(JS_API) + 1 :]
        return self.subject


def office_services(office: str) -> tuple[Service, ...]:
    """Everything an office node asks of LIAISON: nothing that names another office."""
    durable = office_durable(office)
    return (
        Service(out_subject(office)),  # a publish; JetStream's PubAck is the answer
        Service(office_attach_filter(office)),
        Service(f"{JS_API}.DIRECT.GET.{ATTACH_STREAM}.{ATTACH_PREFIX}.>"),
        Service(f"{JS_API}.CONSUMER.INFO.{IN_STREAM}.{durable}"),
        Service(f"{JS_API}.CONSUMER.MSG.NEXT.{IN_STREAM}.{durable}", streamed=True),
        Service(f"$JS.ACK.{IN_STREAM}.{durable}.>"),
        Service(f"{JS_API}.STREAM.MSG.GET.{DIRECTORY_STREAM}"),
    )


def office_permissions(office: str) -> dict[str, Any]:
    """The subject permissions of an office's user: exactly its imports, its replies, the directory."""
    return {
        "publish": {"allow": [s.local for s in office_services(office)]},
        "subscribe": {"allow": [f"{inbox_prefix(office)}.>", DIRECTORY_SUBJECT]},
    }


def _everything() -> dict[str, Any]:
    return {"publish": {"allow": [">"]}, "subscribe": {"allow": [">"]}}


def render_accounts(
    *,
    gateway_dns: Sequence[str],
    office_dns: Mapping[str, Sequence[str]],
) -> str:
    """An ``accounts {…}`` block: LIAISON (JetStream, the gateway) and one account per office.

    ``office_dns`` maps each office to the certificate DNs that act for it (its node
    on a single server; its leaf node link on a hub). Offices address the streams'
    JetStream as ``$JS.LIAISON.API`` (``OFFICE_JS_DOMAIN``), renamed by each import.
    """
    offices = sorted(office_dns)
    # One export per subject, naming every office it serves: who may call what, in one place.
    services: dict[str, dict[str, Any]] = {}
    for office in offices:
        for service in office_services(office):
            export = services.setdefault(service.subject, {"service": service.subject, "accounts": []})
            export["accounts"].append(office)
            if service.streamed:
                export["response_type"] = "stream"
    exports = [{"stream": DIRECTORY_SUBJECT, "accounts": offices}, *services.values()]
    accounts: dict[str, Any] = {
        STREAMS_ACCOUNT: {
            "jetstream": "enabled",
            "users": [{"user": dn, "permissions": _everything()} for dn in gateway_dns],
            "exports": exports,
        }
    }
    for office in offices:
        imports: list[dict[str, Any]] = [
            {"stream": {"account": STREAMS_ACCOUNT, "subject": DIRECTORY_SUBJECT}}
        ]
        for service in office_services(office):
            entry: dict[str, Any] = {"service": {"account": STREAMS_ACCOUNT, "subject": service.subject}}
            if service.js_api:
                entry["to"] = service.local
            imports.append(entry)
        accounts[office] = {
            "users": [{"user": dn, "permissions": office_permissions(office)} for dn in office_dns[office]],
            "imports": imports,
        }
    # JSON is valid nats-server config syntax for these values.
    return f"accounts {json.dumps(accounts, indent=2)}"


def render_tls_accounts(
    *, ca: Path, cert: Path, key: Path, gateway_dn: str, office_dns: Mapping[str, str]
) -> str:
    """``tls {…}`` and ``accounts {…}`` of one server; clients without a valid certificate are refused."""
    return (
        f"tls {{\n  cert_file: {json.dumps(str(cert))}\n  key_file: {json.dumps(str(key))}\n"
        f"  ca_file: {json.dumps(str(ca))}\n  verify_and_map: true\n  timeout: 5\n}}\n"
        + render_accounts(gateway_dns=[gateway_dn], office_dns={o: [dn] for o, dn in office_dns.items()})
        + "\n"
    )
