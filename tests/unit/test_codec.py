"""Codec: round trips, and oversize / garbage / unknown enum input refused precisely; UUIDv7 ids."""

from __future__ import annotations

import pytest

from exchange._pb.liaison.v1 import body_pb2, envelope_pb2, transport_pb2
from exchange.core import errors
from exchange.core.codec import body as body_codec
from exchange.core.codec import envelope as env_codec
from exchange.core.envelope import Receipt, Rejection, Routed
from exchange.core.ids import check_message_id, new_message_id, uuid7_time_ms
from exchange.core.model import CaseMessage, Reason, ReceiptState, Suite
from exchange.core.seal import seal, sign_statement

NOW = 1_760_000_000_000
MID = "01999999-9999-7999-8999-999999999999"


@pytest.fixture(scope="module")
def envelope(offices, directory):
    return seal(
        CaseMessage(case_id="c-1", text="hello"),
        sender="ru-mvd-dushanbe",
        sender_keys=offices["ru-mvd-dushanbe"].signing,
        recipients=("tj-mvd-moscow",),
        directory=directory,
        suite=Suite.CLASSIC,
        now_ms=NOW,
        ttl_s=60,
    )


@pytest.fixture(scope="module")
def stamp(gateway):
    return sign_statement(
        Receipt(MID, ReceiptState.STAMPED, "gw-dushanbe", NOW, bytes(32), "a", log_index=3), gateway[1]
    )


def test_envelope_round_trip_keeps_exact_bytes(envelope):
    again = env_codec.decode_envelope(env_codec.encode_envelope(envelope))
    assert again == envelope
    assert again.header_bytes == envelope.header_bytes


def test_frames_round_trip(envelope, stamp):
    for item in (envelope, stamp, Routed(envelope, stamp)):
        assert env_codec.decode_frame(env_codec.encode_frame(item)) == item


def test_statements_round_trip():
    for st in (
        Receipt(MID, ReceiptState.READ, "office-a", NOW, bytes(32), "office-b", recipient="office-a"),
        Rejection("", Reason.MALFORMED, "does not parse", "gw", NOW, b"", "office-b"),
    ):
        assert env_codec.decode_statement(env_codec.encode_statement(st)) == st


def _oversize(limit):
    return b"\x00" * (limit + 1)


@pytest.mark.parametrize(
    ("decode", "data", "error"),
    [
        (env_codec.decode_envelope, _oversize(env_codec.MAX_ENVELOPE_BYTES), errors.OversizeError),
        (lambda d: env_codec.decode_envelope(d, limit=100), b"\x00" * 101, errors.OversizeError),
        (env_codec.decode_header, _oversize(env_codec.MAX_HEADER_BYTES), errors.OversizeError),
        (env_codec.decode_header_context, _oversize(env_codec.MAX_CONTEXT_BYTES), errors.OversizeError),
        (env_codec.decode_statement, _oversize(env_codec.MAX_STATEMENT_BYTES), errors.OversizeError),
        (
            env_codec.decode_signed_statement,
            _oversize(env_codec.MAX_SIGNED_STATEMENT_BYTES),
            errors.OversizeError,
        ),
        (env_codec.decode_frame, _oversize(env_codec.MAX_FRAME_BYTES), errors.OversizeError),
        (body_codec.decode_body, _oversize(body_codec.MAX_BODY_BYTES), errors.OversizeError),
        (lambda d: body_codec.decode_body(d, limit=10), b"\x00" * 11, errors.OversizeError),
        (env_codec.decode_envelope, b"\xff\xff\xff", errors.CodecError),
        (env_codec.decode_envelope, b"", errors.CodecError),  # empty header does not parse as a context
        (env_codec.decode_header, b"\x0a\x05abc", errors.CodecError),  # truncated length-delimited field
        (env_codec.decode_statement, b"", errors.CodecError),
        (env_codec.decode_frame, b"", errors.CodecError),
        (body_codec.decode_body, b"", errors.CodecError),
        (body_codec.decode_body, b"\x12\x00", errors.CodecError),  # case message with no case id
        (body_codec.decode_body, b"\x1a\x00", errors.CodecError),  # consular request with no citizen
        (body_codec.decode_body, b"\x0a\x02\x08\x63", errors.CodecError),  # alert category 99
        (body_codec.decode_body, b"\x0a\x00", errors.CodecError),  # alert category unspecified
    ],
    ids=[
        "envelope-oversize",
        "envelope-over-caller-limit",
        "header-oversize",
        "context-oversize",
        "statement-oversize",
        "signed-statement-oversize",
        "frame-oversize",
        "body-oversize",
        "body-over-caller-limit",
        "envelope-garbage",
        "envelope-empty",
        "header-truncated",
        "statement-empty",
        "frame-empty",
        "body-empty",
        "body-case-without-id",
        "body-consular-without-citizen",
        "body-unknown-enum",
        "body-unspecified-enum",
    ],
)
def test_decoders_refuse(decode, data, error):
    with pytest.raises(error) as info:
        decode(data)
    assert type(info.value) is error


def _context_pb(**changes):
    fields = {
        "version": 1,
        "message_id": MID,
        "sender": "office-a",
        "recipients": ["office-b"],
        "kind": 1,
        "priority": 1,
        "created_ms": NOW,
        "expires_ms": NOW + 1,
        "handling": 1,
        "suite": 1,
        "signing_key_ids": ["k"],
    } | changes
    return envelope_pb2.HeaderContext(**fields).SerializeToString()


def test_context_round_trip_baseline():
    assert env_codec.decode_header_context(_context_pb()).sender == "office-a"


@pytest.mark.parametrize(
    "changes",
    [
        {"version": 2},
        {"kind": 9},
        {"priority": 0},
        {"suite": 3},
        {"handling": 7},
        {"message_id": "not-a-uuid"},
        {"message_id": "0199ABCD-9999-7999-8999-999999999999"},
        {"sender": "Office A"},
        {"recipients": []},
        {"recipients": ["office-b", "office-b"]},
        {"expires_ms": NOW},
        {"signing_key_ids": []},
    ],
    ids=[
        "version-2",
        "unknown-kind",
        "unspecified-priority",
        "unknown-suite",
        "unknown-handling",
        "bad-message-id",
        "upper-case-message-id",
        "bad-sender-id",
        "no-recipients",
        "duplicate-recipients",
        "expires-not-after-created",
        "no-signing-keys",
    ],
)
def test_invalid_context_is_codec_error(changes):
    with pytest.raises(errors.CodecError):
        env_codec.decode_header_context(_context_pb(**changes))


def test_unknown_signature_algorithm():
    header = envelope_pb2.Header(context=_context_pb(), ciphertext_digest=bytes(32)).SerializeToString()
    env = envelope_pb2.Envelope(header=header, signatures=[envelope_pb2.Signature(key_id="k", algorithm=9)])
    with pytest.raises(errors.CodecError):
        env_codec.decode_envelope(env.SerializeToString())


def test_too_many_signatures():
    header = envelope_pb2.Header(context=_context_pb(), ciphertext_digest=bytes(32)).SerializeToString()
    sigs = [envelope_pb2.Signature(key_id="k", algorithm=1)] * (env_codec.MAX_SIGNATURES + 1)
    with pytest.raises(errors.OversizeError):
        env_codec.decode_envelope(envelope_pb2.Envelope(header=header, signatures=sigs).SerializeToString())


def test_bad_digest_length():
    header = envelope_pb2.Header(context=_context_pb(), ciphertext_digest=bytes(31)).SerializeToString()
    with pytest.raises(errors.CodecError):
        env_codec.decode_header(header)


def test_routed_frame_without_stamp():
    frame = transport_pb2.Frame(routed=transport_pb2.Routed())
    with pytest.raises(errors.CodecError):
        env_codec.decode_frame(frame.SerializeToString())


def test_statement_unknown_reason():
    st = body_pb2.Statement(rejection=body_pb2.Rejection(reason=99, signer="gw")).SerializeToString()
    with pytest.raises(errors.CodecError):
        env_codec.decode_statement(st)


# --- UUIDv7 ------------------------------------------------------------------------------


def test_uuid7_layout():
    mid = new_message_id(NOW, rand=lambda n: b"\xff" * n)
    assert check_message_id(mid) == mid
    assert uuid7_time_ms(mid) == NOW
    assert mid[14] == "7"
    assert mid[19] in "89ab"
    assert new_message_id(0, rand=bytes) == "00000000-0000-7000-8000-000000000000"


def test_uuid7_sorts_by_time():
    ids = [new_message_id(NOW + i) for i in range(0, 5000, 700)]
    assert ids == sorted(ids)
    assert len({new_message_id(NOW) for _ in range(100)}) == 100


@pytest.mark.parametrize(
    "text",
    [
        "",
        "01999999-9999-4999-8999-999999999999",  # version 4
        "01999999-9999-7999-c999-999999999999",  # wrong variant
        "01999999999979998999999999999999",  # no dashes
        "01999999-9999-7999-8999-99999999999G",
    ],
    ids=["empty", "v4", "bad-variant", "no-dashes", "non-hex"],
)
def test_check_message_id_refuses(text):
    with pytest.raises(errors.CodecError):
        check_message_id(text)


def test_new_message_id_refuses_bad_inputs():
    with pytest.raises(ValueError, match="48-bit"):
        new_message_id(-1)
    with pytest.raises(ValueError, match="random"):
        new_message_id(NOW, rand=lambda n: b"")
