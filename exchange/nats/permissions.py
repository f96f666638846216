"""NATS authorization for a deployment: who may publish and subscribe to what.

Pure: renders the ``tls`` and ``authorization`` blocks of a nats-server
config from the certificates' subject DNs. Each office's certificate maps
(``verify_and_map``) to a user that may publish only on its own out subject
and read only its own inbox through its own durable consumer and its own
reply-inbox prefix; the gateway alone may read every out subject, write
every inbox and publish the directory. An office may publish attachment
chunks only under its own attachment prefix and read chunks only by exact
subject (JetStream direct get), which needs the attachment's unguessable id:
it cannot list the attachment stream. Everything else is denied.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from exchange.core.wire import (
    ATTACH_PREFIX,
    ATTACH_STREAM,
    DIRECTORY_STREAM,
    DIRECTORY_SUBJECT,
    IN_STREAM,
    JS_API,
    in_subject,
    inbox_prefix,
    office_attach_filter,
    office_durable,
    out_subject,
)

__all__ = ["office_permissions", "render_tls_authorization"]


def office_permissions(office: str) -> dict[str, Any]:
    """The least an office node needs: its out subject, its own inbox consumer, the directory,
    its own attachment subjects and direct gets of attachment chunks by subject."""
    durable = office_durable(office)
    api = JS_API
    return {
        "publish": {
            "allow": [
                out_subject(office),
                office_attach_filter(office),
                f"{api}.DIRECT.GET.{ATTACH_STREAM}.{ATTACH_PREFIX}.>",
                f"{api}.CONSUMER.CREATE.{IN_STREAM}.{durable}.{in_subject(office)}",
                f"{api}.CONSUMER.INFO.{IN_STREAM}.{durable}",
                f"{api}.CONSUMER.MSG.NEXT.{IN_STREAM}.{durable}",
                f"$JS.ACK.{IN_STREAM}.{durable}.>",
                f"{api}.STREAM.MSG.GET.{DIRECTORY_STREAM}",
            ]
        },
        "subscribe": {"allow": [f"{inbox_prefix(office)}.>", DIRECTORY_SUBJECT]},
    }


def render_tls_authorization(
    *, ca: Path, cert: Path, key: Path, gateway_dn: str, office_dns: Mapping[str, str]
) -> str:
    """``tls {…}`` and ``authorization {…}`` blocks; clients without a valid certificate are refused."""
    users = [
        {"user": gateway_dn, "permissions": {"publish": {"allow": [">"]}, "subscribe": {"allow": [">"]}}}
    ]
    users += [{"user": dn, "permissions": office_permissions(office)} for office, dn in office_dns.items()]
    # JSON is valid nats-server config syntax for these values.
    return (
        f"tls {{\n  cert_file: {json.dumps(str(cert))}\n  key_file: {json.dumps(str(key))}\n"
        f"  ca_file: {json.dumps(str(ca))}\n  verify_and_map: true\n  timeout: 5\n}}\n"
        f"authorization {{\n  users: {json.dumps(users, indent=2)}\n}}\n"
    )
