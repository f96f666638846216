"""Named bounds on every field an office or an agency system controls, and the one text check.

Every field of a signed header and of an agency's send request has a limit
here, checked where the value enters: the agency API (``exchange.core.api``,
``exchange.core.model`` constructors, so INVALID_ARGUMENT names the field and
the limit), ``seal`` on the office, and the gateway's ``decide`` again for
frames an office put on NATS itself (``exchange.core.envelope.check_header_bounds``).
The audit store's and every audit reader's limits are derived from these
(``gateway.audit.query``), so whatever the gateway can record, every reader can read.

What it does not do: check formats (ids are ``model.check_id`` and
``ids.check_message_id``) or the directory's own, possibly lower, limits.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = [
    "MAX_ATTACHMENTS",
    "MAX_ATTACHMENT_NAME_LEN",
    "MAX_CASE_ID_LEN",
    "MAX_DETAIL_LEN",
    "MAX_IDEMPOTENCY_KEY_LEN",
    "MAX_KEY_ID_LEN",
    "MAX_MEDIA_TYPE_LEN",
    "MAX_OFFICE_ID_LEN",
    "MAX_PERSONS",
    "MAX_PERSON_FIELD_LEN",
    "MAX_RECIPIENTS",
    "MAX_SIGNING_KEY_IDS",
    "MAX_SUBJECT_LEN",
    "MAX_THREAD_LEN",
    "check_count",
    "check_text",
]

MAX_OFFICE_ID_LEN: Final = 63  # office, gateway, authority ids: [a-z0-9-]{1,63}
MAX_CASE_ID_LEN: Final = 128
# Hard ceiling of recipients per message; the directory's ``max_recipients`` must not exceed it.
MAX_RECIPIENTS: Final = 128
MAX_SIGNING_KEY_IDS: Final = 8
MAX_KEY_ID_LEN: Final = 128
MAX_ATTACHMENTS: Final = 16  # per message, inline and external
MAX_IDEMPOTENCY_KEY_LEN: Final = 128
MAX_SUBJECT_LEN: Final = 1024
MAX_THREAD_LEN: Final = 128
MAX_ATTACHMENT_NAME_LEN: Final = 255
MAX_MEDIA_TYPE_LEN: Final = 255
MAX_PERSONS: Final = 64
MAX_PERSON_FIELD_LEN: Final = 256
# A rejection's detail (error texts name fields and ids, never content).
MAX_DETAIL_LEN: Final = 300

# C0 controls (NUL, newline, escape...), DEL and C1 controls: none belongs in a one-line field,
# NUL breaks PostgreSQL's text type and control sequences reach operators' terminals.
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def check_text(field: str, value: str, limit: int, *, one_line: bool = False) -> str:
    """Return ``value`` when it is at most ``limit`` characters; else ValueError.

    ``one_line``: no control characters either (fields that reach the clear header,
    the audit log and operators' screens). The message names the field and the
    limit, never the value (it may be content).
    """
    if not isinstance(value, str):
        raise TypeError(f"{field} must be text")
    if len(value) > limit:
        raise ValueError(f"{field} is {len(value)} characters, limit {limit}")
    if one_line and _CONTROL.search(value):
        raise ValueError(f"{field} contains a control character")
    return value


def check_count(field: str, count: int, limit: int) -> None:
    """ValueError naming the field and the limit when ``count`` exceeds it."""
    if count > limit:
        raise ValueError(f"{field} has {count} entries, limit {limit}")
