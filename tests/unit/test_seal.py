"""Round trips through seal / verify_envelope / open_envelope, and signed statements."""

from __future__ import annotations

import dataclasses

import pytest

from exchange.core import errors, model, primitives
from exchange.core.codec.body import encode_body
from exchange.core.codec.envelope import decode_envelope, encode_envelope, encode_signed_statement
from exchange.core.envelope import Receipt, Rejection
from exchange.core.ids import uuid7_time_ms
from exchange.core.model import (
    Alert,
    AlertCategory,
    Attachment,
    CaseMessage,
    ConsularRequest,
    ConsularRequestType,
    Handling,
    Identifier,
    Kind,
    Person,
    PolicyRule,
    Priority,
    Reason,
    ReceiptState,
    Suite,
)
from exchange.core.seal import (
    check_policy,
    open_envelope,
    seal,
    sign_statement,
    verify_envelope,
    verify_statement,
)

NOW = 1_760_000_000_000
SENDER = "ru-mvd-dushanbe"
ALL_RECIPIENTS = ("tj-mvd-moscow", "tj-labour-moscow", "ru-embassy-dushanbe")

ALERT = Alert(
    category=AlertCategory.DRUG_TRAFFICKING,
    priority=Priority.IMMEDIATE,
    subject="Shipment",
    text="Courier expected at the border crossing.",
    persons=(Person("A. Example", "1990-01-01", "TJ", (Identifier("passport", "X123", "TJ"),), "suspect"),),
    attachments=(Attachment("photo.jpg", "image/jpeg", b"\xff\xd8" + bytes(100)),),
)
CASE = CaseMessage(case_id="case-42", text="Follow-up on the joint case.", thread="t1", subject="Case 42")
CONSULAR = ConsularRequest(
    citizen=Person("B. Citizen", nationality="TJ"),
    request_type=ConsularRequestType.DETENTION_NOTICE,
    text="Citizen detained; requests consular visit.",
)


def seal_from(offices, directory, body, recipients, suite=Suite.CLASSIC, **kwargs):
    return seal(
        body,
        sender=SENDER,
        sender_keys=offices[SENDER].signing,
        recipients=recipients,
        directory=directory,
        suite=suite,
        now_ms=NOW,
        ttl_s=3600,
        **kwargs,
    )


@pytest.mark.parametrize("suite", [Suite.CLASSIC, Suite.HYBRID_PQ], ids=lambda s: s.label)
@pytest.mark.parametrize("n_recipients", [1, 3], ids=["1-recipient", "3-recipients"])
@pytest.mark.parametrize("body", [ALERT, CASE, CONSULAR], ids=["alert", "case", "consular"])
def test_round_trip(offices, directory, suite, n_recipients, body):
    recipients = ALL_RECIPIENTS[:n_recipients]
    env = seal_from(offices, directory, body, recipients, suite)
    wire = encode_envelope(env)
    for recipient in recipients:
        opened = open_envelope(
            wire, me=recipient, my_keys=offices[recipient].encryption, directory=directory, now_ms=NOW + 1000
        )
        assert opened.body == body
        assert opened.header.sender == SENDER
        assert opened.header.recipients == recipients
        assert opened.header.kind is body.kind
        assert opened.header.header_digest == primitives.sha256(env.header_bytes)


def test_header_carries_the_decided_fields(offices, directory):
    env = seal_from(
        offices, directory, ALERT, ALL_RECIPIENTS[:2], Suite.HYBRID_PQ, handling=Handling.RESTRICTED
    )
    ctx = decode_envelope(encode_envelope(env)).header.context
    assert ctx.version == 1
    assert uuid7_time_ms(ctx.message_id) == NOW
    assert (ctx.created_ms, ctx.expires_ms) == (NOW, NOW + 3_600_000)
    assert ctx.priority is Priority.IMMEDIATE
    assert ctx.handling is Handling.RESTRICTED
    assert ctx.suite is Suite.HYBRID_PQ
    assert ctx.body_size == len(encode_body(ALERT))
    assert len(ctx.signing_key_ids) == 2
    assert [s.algorithm.name for s in env.signatures] == ["ED25519", "ML_DSA_65"]
    assert [w.recipient for w in env.header.wrapped_keys] == list(ALL_RECIPIENTS[:2])


def test_case_message_header_takes_case_id_and_routine_priority(offices, directory):
    env = seal_from(offices, directory, CASE, ALL_RECIPIENTS[:1])
    assert env.header.context.case_id == "case-42"
    assert env.header.context.priority is Priority.ROUTINE


def test_body_bytes_are_accepted(offices, directory):
    env = seal_from(offices, directory, encode_body(CONSULAR), ALL_RECIPIENTS[:1], message_id=None)
    opened = open_envelope(
        env,
        me=ALL_RECIPIENTS[0],
        my_keys=offices[ALL_RECIPIENTS[0]].encryption,
        directory=directory,
        now_ms=NOW,
    )
    assert opened.body == CONSULAR
    assert opened.header.kind is Kind.CONSULAR_REQUEST


def test_given_message_id_is_kept(offices, directory):
    mid = "01999999-9999-7999-8999-999999999999"
    env = seal_from(offices, directory, CASE, ALL_RECIPIENTS[:1], message_id=mid, in_reply_to=mid)
    vh = verify_envelope(encode_envelope(env), directory=directory, now_ms=NOW)
    assert vh.message_id == mid
    assert vh.context.in_reply_to == mid


def test_gateway_verification_needs_no_private_key(offices, directory):
    env = seal_from(offices, directory, ALERT, ALL_RECIPIENTS)
    vh = verify_envelope(encode_envelope(env), directory=directory, now_ms=NOW)
    assert vh.envelope.header_bytes == env.header_bytes


def test_policy(offices, kit):
    only_case = (PolicyRule(SENDER, frozenset({Kind.CASE_MESSAGE}), frozenset({"tj-mvd-moscow"})),)
    d = kit.make_directory(list(offices.values()), policy=only_case)
    allowed = verify_envelope(seal_from(offices, d, CASE, ("tj-mvd-moscow",)), directory=d, now_ms=NOW)
    check_policy(allowed, d)
    wrong_kind = verify_envelope(seal_from(offices, d, ALERT, ("tj-mvd-moscow",)), directory=d, now_ms=NOW)
    with pytest.raises(errors.PolicyDeniedError):
        check_policy(wrong_kind, d)
    wrong_recipient = verify_envelope(
        seal_from(offices, d, CASE, ("tj-mvd-moscow", "tj-labour-moscow")), directory=d, now_ms=NOW
    )
    with pytest.raises(errors.PolicyDeniedError):
        check_policy(wrong_recipient.context, d)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"recipients": ("nobody",)}, errors.UnknownRecipientError),
        ({"sender": "nobody"}, errors.UnknownSenderError),
        ({"sender_keys": ()}, errors.KeyNotValidError),
        ({"ttl_s": 0}, ValueError),
    ],
    ids=["unknown-recipient", "unknown-sender", "no-signing-key", "zero-ttl"],
)
def test_seal_refuses(offices, directory, kwargs, error):
    args = {
        "sender": SENDER,
        "sender_keys": offices[SENDER].signing,
        "recipients": ALL_RECIPIENTS[:1],
        "directory": directory,
        "suite": Suite.CLASSIC,
        "now_ms": NOW,
        "ttl_s": 60,
    } | kwargs
    with pytest.raises(error):
        seal(CASE, **args)


def test_seal_refuses_downgrade(offices, pq_directory):
    with pytest.raises(errors.SuiteNotAllowedError):
        seal_from(offices, pq_directory, CASE, ALL_RECIPIENTS[:1], Suite.CLASSIC)


def test_seal_refuses_oversize_body(offices, directory):
    big = CaseMessage(case_id="c", text="x" * (directory.limits.max_body_bytes + 1))
    with pytest.raises(errors.OversizeError):
        seal_from(offices, directory, big, ALL_RECIPIENTS[:1])


# --- statements --------------------------------------------------------------------------

DIGEST = bytes(range(32))
MID = "01999999-9999-7999-8999-999999999999"


@pytest.mark.parametrize(
    "statement",
    [
        Receipt(MID, ReceiptState.STAMPED, "gw-dushanbe", NOW, DIGEST, SENDER, log_index=7),
        Rejection(MID, Reason.POLICY_DENIED, "kind not allowed", "gw-dushanbe", NOW, DIGEST, SENDER),
    ],
    ids=["receipt", "rejection"],
)
def test_statement_round_trip(gateway, pq_directory, statement):
    signed = sign_statement(statement, gateway[1])
    assert verify_statement(encode_signed_statement(signed), directory=pq_directory, now_ms=NOW) == statement


def test_office_receipt(offices, directory):
    r = Receipt(MID, ReceiptState.READ, "tj-mvd-moscow", NOW, DIGEST, SENDER, recipient="tj-mvd-moscow")
    signed = sign_statement(r, offices["tj-mvd-moscow"].signing)
    assert verify_statement(signed, directory=directory, now_ms=NOW) == r


def test_statement_negative(offices, gateway, pq_directory, kit):
    r = Receipt(MID, ReceiptState.DELIVERED, "tj-mvd-moscow", NOW, DIGEST, SENDER)
    eds = offices["tj-mvd-moscow"].signing_key(primitives.Algorithm.ED25519)
    with pytest.raises(errors.MissingSignatureError):
        verify_statement(sign_statement(r, [eds]), directory=pq_directory, now_ms=NOW)
    forged = sign_statement(r, offices[SENDER].signing)
    with pytest.raises(errors.KeyNotValidError):
        verify_statement(forged, directory=pq_directory, now_ms=NOW)
    good = sign_statement(r, offices["tj-mvd-moscow"].signing)
    tampered = type(good)(
        Receipt(MID, ReceiptState.READ, "tj-mvd-moscow", NOW, DIGEST, SENDER),
        good.statement_bytes,
        good.signatures,
    )
    # the signed bytes are what count, not a parsed copy that disagrees with them ...
    assert verify_statement(tampered, directory=pq_directory, now_ms=NOW) == r
    with pytest.raises(errors.SignatureError):  # ... and changed bytes do not verify
        verify_statement(
            type(good)(r, good.statement_bytes[:-1] + b"\x01", good.signatures),
            directory=pq_directory,
            now_ms=NOW,
        )
    with pytest.raises(errors.ClockSkewError):
        verify_statement(good, directory=pq_directory, now_ms=NOW - 3_600_000)
    # Nor dated longer ago than a message may live (issue 11, section 5).
    ttl_ms = pq_directory.limits.max_ttl_s * 1000
    assert verify_statement(good, directory=pq_directory, now_ms=NOW + ttl_ms) == r
    with pytest.raises(errors.ExpiredError, match="more than"):
        verify_statement(good, directory=pq_directory, now_ms=NOW + ttl_ms + 1)
    unknown = Receipt(MID, ReceiptState.DELIVERED, "nobody", NOW, DIGEST, SENDER)
    with pytest.raises(errors.UnknownSenderError):
        verify_statement(sign_statement(unknown, gateway[1]), directory=pq_directory, now_ms=NOW)


def test_statement_key_judged_no_earlier_than_the_backbone_stored_it(offices, directory):
    """A receipt dated before its signer's key was revoked, stored after: refused."""
    signer = "tj-mvd-moscow"
    r = Receipt(MID, ReceiptState.READ, signer, NOW - 5_000, DIGEST, SENDER, recipient=signer)
    signed = sign_statement(r, offices[signer].signing)
    office = directory.office(signer)
    revoked_keys = tuple(
        dataclasses.replace(k, status=model.KeyStatus.REVOKED, revoked_at_ms=NOW)
        if k.algorithm.is_signing
        else k
        for k in office.keys
    )
    revoked = dataclasses.replace(
        directory,
        offices=tuple(
            dataclasses.replace(o, keys=revoked_keys) if o.id == signer else o for o in directory.offices
        ),
    )
    assert verify_statement(signed, directory=revoked, now_ms=NOW, stored_ms=NOW - 1) == r
    with pytest.raises(errors.KeyRevokedError):
        verify_statement(signed, directory=revoked, now_ms=NOW, stored_ms=NOW)
