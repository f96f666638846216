"""Named bounds on every header field, ids with fullmatch, the largest audit record readable.

Issue 11, section 3. The pure checks (``exchange.core.bounds`` and the
constructors that use them) and the one set of limits shared by the audit
store and its readers; the attacks through the real servers are in
``tests/integration/test_poison.py``.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from exchange.core import bounds
from exchange.core.api import SendRequest
from exchange.core.envelope import ENVELOPE_VERSION, HeaderContext, check_header_bounds
from exchange.core.errors import CodecError
from exchange.core.ids import check_message_id, new_message_id
from exchange.core.model import (
    Attachment,
    CaseMessage,
    Handling,
    Kind,
    Limits,
    Priority,
    Reason,
    Suite,
    check_attachment_id,
    check_id,
)
from exchange.core.wire import MAX_GRPC_MESSAGE_BYTES
from gateway.audit.codec import decode_record, encode_record
from gateway.audit.query import MAX_ENTRY_BYTES, MAX_META_TEXT_LEN, MAX_PAGE_SIZE, MAX_RECORD_BYTES
from gateway.audit.record import AuditRecord, Verdict

NOW = 1_760_000_000_000
MID = new_message_id(NOW)
BODY = CaseMessage(case_id="CASE-1", text="t")


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("office-a\n", id="trailing-newline"),
        pytest.param("office-a\x00", id="trailing-nul"),
        pytest.param("Office-a", id="upper-case"),
        pytest.param("a" * 64, id="64-chars"),
        pytest.param("", id="empty"),
    ],
)
def test_check_id_refuses(value: str) -> None:
    """Failed before the fix for ``trailing-newline``: ``re.match`` with ``$`` accepted it."""
    with pytest.raises(ValueError, match="is not"):
        check_id(value, "office")


def test_message_and_attachment_ids_use_fullmatch() -> None:
    with pytest.raises(CodecError):
        check_message_id(MID[:-1] + "\n")
    with pytest.raises(ValueError, match="attachment id"):
        check_attachment_id("0" * 32 + "\n")
    assert check_id("a" * 63, "office") == "a" * 63


def _request(**kw: object) -> Callable[[], object]:
    return lambda: SendRequest(**{"body": BODY, "recipients": ("office-b",), **kw})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("build", "needle"),
    [
        pytest.param(_request(case_id="c" * 129), "case_id is 129 characters, limit 128", id="case-id"),
        pytest.param(_request(case_id="a\x00b"), "case_id contains a control character", id="case-id-nul"),
        pytest.param(
            _request(recipients=tuple(f"o-{i}" for i in range(129))),
            "recipients has 129 entries, limit 128",
            id="recipients",
        ),
        pytest.param(_request(recipients=("office-b\n",)), "recipient id", id="recipient-newline"),
        pytest.param(_request(in_reply_to="x"), "in_reply_to", id="in-reply-to"),
        pytest.param(
            _request(idempotency_key="k" * 129), "idempotency_key is 129 characters, limit 128", id="idem"
        ),
        pytest.param(
            _request(attachments=tuple(f"{i:032x}" for i in range(17))),
            "attachments has 17 entries, limit 16",
            id="attachments",
        ),
        pytest.param(lambda: CaseMessage(case_id="c" * 5000, text="t"), "case_id is 5000", id="body-case"),
        pytest.param(lambda: CaseMessage(case_id="c", text="t", thread="t" * 129), "thread is", id="thread"),
        pytest.param(lambda: CaseMessage(case_id="c", text="t", subject="s" * 1025), "subject is", id="subj"),
        pytest.param(lambda: Attachment("n" * 256, "text/plain", b""), "attachment name is", id="att-name"),
        pytest.param(lambda: Limits(max_recipients=129), "max_recipients 1..128", id="directory-limit"),
    ],
)
def test_agency_fields_have_named_bounds(build: Callable[[], object], needle: str) -> None:
    """Each message names the field and the limit (the office answers INVALID_ARGUMENT with it)."""
    with pytest.raises(ValueError) as raised:
        build()
    assert needle in str(raised.value)


def _context(**kw: object) -> HeaderContext:
    fields: dict[str, object] = {
        "version": ENVELOPE_VERSION,
        "message_id": MID,
        "sender": "office-a",
        "recipients": ("office-b",),
        "kind": Kind.CASE_MESSAGE,
        "priority": Priority.ROUTINE,
        "case_id": "CASE-1",
        "in_reply_to": "",
        "created_ms": NOW,
        "expires_ms": NOW + 1000,
        "handling": Handling.OFFICIAL,
        "suite": Suite.CLASSIC,
        "signing_key_ids": ("k1",),
        "body_size": 1,
    }
    return HeaderContext(**{**fields, **kw})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kw", "needle"),
    [
        pytest.param({"case_id": "c" * 5000}, "case_id is 5000 characters, limit 128", id="case-id"),
        pytest.param({"case_id": "a\x00"}, "case_id contains a control character", id="case-id-nul"),
        pytest.param(
            {"recipients": tuple(f"o-{i}" for i in range(1000))},
            "recipients has 1000 entries",
            id="recipients",
        ),
        pytest.param({"signing_key_ids": tuple(f"k{i}" for i in range(9))}, "signing_key_ids", id="key-ids"),
        pytest.param({"signing_key_ids": ("k" * 129,)}, "signing key id is 129", id="key-id-length"),
    ],
)
def test_header_bounds_checked_at_seal_and_gateway(kw: dict[str, object], needle: str) -> None:
    with pytest.raises(CodecError) as raised:
        check_header_bounds(_context(**kw))
    assert needle in str(raised.value)


def test_header_at_its_bounds_passes() -> None:
    check_header_bounds(
        _context(
            case_id="c" * bounds.MAX_CASE_ID_LEN,
            recipients=tuple(f"{i:03d}" + "r" * 60 for i in range(bounds.MAX_RECIPIENTS)),
        )
    )


def largest_record() -> AuditRecord:
    """The largest audit record the gateway can build: every field at its bound."""
    return AuditRecord(
        at_ms=(1 << 63) - 1,
        verdict=Verdict.REJECTED,
        sender="s" * bounds.MAX_OFFICE_ID_LEN,
        message_id=MID,
        recipients=tuple(
            f"{i:03d}" + "r" * (bounds.MAX_OFFICE_ID_LEN - 3) for i in range(bounds.MAX_RECIPIENTS)
        ),
        kind=Kind.CONSULAR_REQUEST,
        priority=Priority.FLASH,
        case_id="\U0010ffff" * bounds.MAX_CASE_ID_LEN,  # 4 bytes each in UTF-8
        created_ms=(1 << 63) - 1,
        expires_ms=(1 << 63) - 1,
        envelope_size=(1 << 63) - 1,
        header_digest=b"\xff" * 32,
        ciphertext_digest=b"\xff" * 32,
        suite=Suite.HYBRID_PQ,
        reason=Reason.SENDER_MISMATCH,
        detail="\U0010ffff" * bounds.MAX_DETAIL_LEN,
        receipt_signer="",
        source_seq=(1 << 63) - 1,
    )


def test_largest_record_the_gateway_can_build_is_readable_everywhere() -> None:
    """Store and readers share one limit, and the largest record is well inside it.

    Failed before the fix: the store took entries up to 1 MiB while ``decode_record``
    (Query, Tail, proofs, export, verify, witness, console) stopped at 64 KiB.
    """
    data = encode_record(largest_record())
    assert MAX_ENTRY_BYTES == MAX_RECORD_BYTES
    assert len(data) <= MAX_RECORD_BYTES
    assert decode_record(data) == largest_record()
    # A full Query page of such records still fits one gRPC message.
    assert MAX_PAGE_SIZE * (len(data) + 64) <= MAX_GRPC_MESSAGE_BYTES
    # Every indexed text column fits the store's column bound.
    assert max(bounds.MAX_CASE_ID_LEN, bounds.MAX_OFFICE_ID_LEN) <= MAX_META_TEXT_LEN
