"""Every NATS name and wire limit Liaison uses: streams, subjects, durables, headers.

Pure constants and functions returning strings (the shape of nats.py's
``protocol/command.py``): the office node, the gateway, the NATS permissions,
the metrics samplers, the lab and the deployment bundles all take their names
from here, so a consumer name and the permission that allows it cannot drift
apart. ``check_outbound`` checks the limits before anything is sent.

What it does not do: it opens no connection and knows nothing of payloads
beyond their size; the JetStream shell is ``exchange.nats.transport``.
"""

from __future__ import annotations

import hashlib
from typing import Final

from exchange.core.attachments import SEALED_CHUNK_MAX
from exchange.core.errors import CodecError, OversizeError
from exchange.core.model import check_id

__all__ = [
    "ATTACH_MAX_AGE_S",
    "ATTACH_MAX_BYTES",
    "ATTACH_MAX_MSG_SIZE",
    "ATTACH_PREFIX",
    "ATTACH_STREAM",
    "DIRECTORY_STREAM",
    "DIRECTORY_SUBJECT",
    "DUPLICATE_WINDOW_S",
    "FROZEN_PREFIX",
    "GATEWAY_DURABLE_PREFIX",
    "HEADER_EXPECTED_LAST_SUBJECT_SEQ",
    "HEADER_MSG_ID",
    "HEADER_PRIORITY",
    "IN_FILTER",
    "IN_PREFIX",
    "IN_STREAM",
    "JS_API",
    "MAX_GRPC_MESSAGE_BYTES",
    "MAX_MSG_ID_LEN",
    "MAX_PAYLOAD_BYTES",
    "OFFICE_DURABLE_PREFIX",
    "OFFICE_INBOX_ACK_WAIT_S",
    "OFFICE_INBOX_MAX_DELIVER",
    "OFFICE_JS_DOMAIN",
    "OUT_FILTER",
    "OUT_PREFIX",
    "OUT_STREAM",
    "PRIORITY_MAX",
    "PRIORITY_MIN",
    "STREAM_MAX_MSG_SIZE",
    "attach_subject",
    "check_outbound",
    "delivered_msg_id",
    "directory_msg_id",
    "forwarded_msg_id",
    "frozen_subject",
    "gateway_client_name",
    "gateway_durable",
    "in_subject",
    "inbox_prefix",
    "office_attach_filter",
    "office_client_name",
    "office_durable",
    "office_of_out_subject",
    "out_subject",
    "parse_priority",
    "publish_headers",
    "read_msg_id",
    "rejected_msg_id",
    "routed_msg_id",
    "stamped_msg_id",
]

# --- streams ---------------------------------------------------------------------------

OUT_STREAM: Final = "LIAISON_OUT"  # office -> gateway (work queue, ADR 0006)
IN_STREAM: Final = "LIAISON_IN"  # gateway -> office (work queue, ADR 0006)
DIRECTORY_STREAM: Final = "LIAISON_DIRECTORY"  # the newest signed directory only
ATTACH_STREAM: Final = "LIAISON_ATTACH"  # sealed attachment chunks

# --- subjects --------------------------------------------------------------------------

OUT_PREFIX: Final = "liaison.v1.out"
IN_PREFIX: Final = "liaison.v1.in"
OUT_FILTER: Final = f"{OUT_PREFIX}.>"
IN_FILTER: Final = f"{IN_PREFIX}.>"
DIRECTORY_SUBJECT: Final = "liaison.v1.directory"
ATTACH_PREFIX: Final = "liaison.v1.attach"
# Subject a stream is parked on while it is checked (nobody publishes or subscribes there).
FROZEN_PREFIX: Final = "liaison.v1.retired"
JS_API: Final = "$JS.API"
# The JetStream domain offices address the streams by ($JS.LIAISON.API.…). No server has it:
# each office account's service imports map it onto the streams account's $JS.API (ADR 0011).
# Not $JS.API: an account without JetStream answers that itself ("not enabled"), racing the
# import. Not the hub's real domain: through a leaf link such requests got no answer (checked).
OFFICE_JS_DOMAIN: Final = "LIAISON"


def out_subject(office: str) -> str:
    """Where ``office`` publishes its frames for the gateway."""
    return f"{OUT_PREFIX}.{office}"


def in_subject(office: str) -> str:
    """Where the gateway publishes frames for ``office``."""
    return f"{IN_PREFIX}.{office}"


def office_of_out_subject(subject: str) -> str:
    """The office token of an out subject (its last token)."""
    return subject.rsplit(".", 1)[-1]


def attach_subject(owner: str, attachment_id: str, index: int) -> str:
    """The subject of one sealed chunk of ``owner``'s attachment."""
    return f"{ATTACH_PREFIX}.{owner}.{attachment_id}.{index}"


def office_attach_filter(owner: str) -> str:
    """Every attachment subject of ``owner`` (what its NATS user may publish on)."""
    return f"{ATTACH_PREFIX}.{owner}.>"


def frozen_subject(stream: str) -> str:
    return f"{FROZEN_PREFIX}.{stream}"


# --- durable consumers, client names, reply inboxes -------------------------------------

OFFICE_DURABLE_PREFIX: Final = "office-"
GATEWAY_DURABLE_PREFIX: Final = "gateway-"
# An office's inbox consumer, created by the gateway (an office may not create consumers, ADR 0011).
OFFICE_INBOX_ACK_WAIT_S: Final = 10.0  # the office node settles a fetched batch well within this
# Refusals are parked as poison by the office node itself; anything else (store, keys not
# rotated in yet) is retried for as long as it takes, never dropped.
OFFICE_INBOX_MAX_DELIVER: Final = -1


def office_durable(office: str) -> str:
    """The office node's durable consumer on ``IN_STREAM``; its NATS permissions name exactly this."""
    return f"{OFFICE_DURABLE_PREFIX}{office}"


def gateway_durable(office: str) -> str:
    """The gateway's consumer name for an out subject token (hashed if not a valid office id)."""
    try:
        return GATEWAY_DURABLE_PREFIX + check_id(office, "office")
    except ValueError:
        return GATEWAY_DURABLE_PREFIX + "x" + hashlib.sha256(office.encode()).hexdigest()[:24]


def office_client_name(office: str) -> str:
    """The NATS connection name of an office node."""
    return f"office-{office}"


def gateway_client_name(gateway: str) -> str:
    """The NATS connection name of a gateway."""
    return f"gateway-{gateway}"


def inbox_prefix(office: str) -> str:
    """Per-office reply subjects, so replies to one office are not readable by another."""
    return f"_INBOX_{office}"


# --- message ids (the Nats-Msg-Id of each frame, for JetStream's dedup window) -----------


def routed_msg_id(message_id: str, recipient: str) -> str:
    return f"{message_id}.routed.{recipient}"


def stamped_msg_id(message_id: str) -> str:
    return f"{message_id}.stamped"


def rejected_msg_id(message_id: str, log_index: int) -> str:
    return f"{message_id}.rejected.{log_index}"


def forwarded_msg_id(message_id: str, state: str, signer: str) -> str:
    """A receipt forwarded by the gateway to the message's sender (``state``: its name)."""
    return f"{message_id}.{state}.{signer}"


def delivered_msg_id(message_id: str, office: str) -> str:
    return f"{message_id}.delivered.{office}"


def read_msg_id(message_id: str, office: str) -> str:
    return f"{message_id}.read.{office}"


def directory_msg_id(data: bytes) -> str:
    return "directory-" + hashlib.sha256(data).hexdigest()


# --- headers and limits ----------------------------------------------------------------

HEADER_MSG_ID: Final = "Nats-Msg-Id"
# Optimistic concurrency: JetStream stores the message only over that subject sequence.
HEADER_EXPECTED_LAST_SUBJECT_SEQ: Final = "Nats-Expected-Last-Subject-Sequence"
HEADER_PRIORITY: Final = "Liaison-Priority"
MAX_PAYLOAD_BYTES: Final = 16 << 20
# gRPC messages either way, on every server and channel (streamed attachments are cut in 1 MiB chunks).
MAX_GRPC_MESSAGE_BYTES: Final = 16 << 20
# Stream limit = payload limit + room for headers (the server's max_payload must be at least this).
STREAM_MAX_MSG_SIZE: Final = MAX_PAYLOAD_BYTES + (64 << 10)
DUPLICATE_WINDOW_S: Final = 120.0
MAX_MSG_ID_LEN: Final = 256
PRIORITY_MIN: Final = 1
PRIORITY_MAX: Final = 4
# Retention: chunks outlive the longest message lifetime with room to download late.
# The size cap is reserved from the server's JetStream store (max_file_store, 1 GiB in
# rendered configs) when the stream is created, so it must stay well below it; when the
# stream is full, uploads are refused (DiscardPolicy.NEW) until chunks age out.
ATTACH_MAX_AGE_S: Final = 30 * 24 * 3600.0
ATTACH_MAX_BYTES: Final = 512 << 20
ATTACH_MAX_MSG_SIZE: Final = SEALED_CHUNK_MAX + (64 << 10)


def check_outbound(subject: str, payload: bytes, msg_id: str, priority: int) -> None:
    """Raise before sending what a server would refuse or a consumer misread."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise OversizeError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    if not msg_id or len(msg_id) > MAX_MSG_ID_LEN:
        raise CodecError(f"msg_id must be 1..{MAX_MSG_ID_LEN} characters")
    if not PRIORITY_MIN <= priority <= PRIORITY_MAX:
        raise CodecError(f"priority {priority} outside {PRIORITY_MIN}..{PRIORITY_MAX}")
    if not subject or any(c in subject for c in " \t\r\n"):
        raise CodecError("invalid subject")


def publish_headers(msg_id: str, priority: int) -> dict[str, str]:
    return {HEADER_MSG_ID: msg_id, HEADER_PRIORITY: str(priority)}


def parse_priority(value: str | None) -> int:
    """``Liaison-Priority`` (1..4); a missing or malformed header counts as the lowest."""
    try:
        priority = int(value or "")
    except ValueError:
        return PRIORITY_MIN
    return priority if PRIORITY_MIN <= priority <= PRIORITY_MAX else PRIORITY_MIN
