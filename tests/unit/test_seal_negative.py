"""Every way to break an envelope, each refused with its own precise error.

One sealed hybrid-pq alert from SENDER to A and B is tampered with in one
place per row; the recipient A then tries to open it (which runs every
gateway check first). Rows that change signed bytes without re-signing must
fail on the signature; rows "...-resigned" model a malicious or buggy sender
and must fail on the later checks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from exchange.core import errors, primitives
from exchange.core.codec.envelope import encode_envelope, encode_header, encode_header_context
from exchange.core.envelope import Envelope, Signature
from exchange.core.model import (
    Alert,
    AlertCategory,
    Algorithm,
    Directory,
    Handling,
    KeyStatus,
    Kind,
    Limits,
    Priority,
    Suite,
)
from exchange.core.seal import HEADER_SIGNING_CONTEXT, open_envelope, seal

NOW = 1_760_000_000_000
SENDER, A, B, C = "ru-mvd-dushanbe", "tj-mvd-moscow", "tj-labour-moscow", "ru-embassy-dushanbe"
BODY = Alert(AlertCategory.WANTED_PERSON, Priority.FLASH, "Wanted", "Person of interest crossing today.")


@dataclass
class Setup:
    offices: dict[str, Any]
    directory: Directory
    pq_directory: Directory
    kit: Any
    env: Envelope  # hybrid-pq, SENDER -> (A, B)
    classic: Envelope  # classic, SENDER -> (A, B)


@dataclass
class Attempt:
    wire: bytes
    directory: Directory
    now_ms: int = NOW + 1000
    me: str = A
    my_keys: Any = None


# --- tampering helpers ---------------------------------------------------------------


def flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


def with_context(env: Envelope, **changes: Any) -> Envelope:
    """Change context fields and re-encode the header, keeping the old signatures."""
    ctx = dataclasses.replace(env.header.context, **changes)
    header = dataclasses.replace(env.header, context=ctx, context_bytes=encode_header_context(ctx))
    return dataclasses.replace(env, header=header, header_bytes=encode_header(header))


def with_header(env: Envelope, **changes: Any) -> Envelope:
    header = dataclasses.replace(env.header, **changes)
    return dataclasses.replace(env, header=header, header_bytes=encode_header(header))


def with_wrapped(env: Envelope, index: int, **changes: Any) -> Envelope:
    wrapped = list(env.header.wrapped_keys)
    wrapped[index] = dataclasses.replace(wrapped[index], **changes)
    return with_header(env, wrapped_keys=tuple(wrapped))


def resign(env: Envelope, s: Setup) -> Envelope:
    """What a sender holding its own keys could do: sign whatever header it likes."""
    sigs = tuple(
        Signature(sig.key_id, sig.algorithm, primitives.sign(key, env.header_bytes, HEADER_SIGNING_CONTEXT))
        for sig, key in zip(env.signatures, s.offices[SENDER].signing, strict=True)
    )
    return dataclasses.replace(env, signatures=sigs)


def other_hex(text: str) -> str:
    """``text`` with its last hex digit changed (keeps ids well formed)."""
    return text[:-1] + ("0" if text[-1] != "0" else "1")


def wire(env: Envelope, s: Setup, **kw: Any) -> Attempt:
    return Attempt(encode_envelope(env), kw.pop("directory", s.directory), **kw)


def signature_of(env: Envelope, algorithm: Algorithm) -> Signature:
    return next(sig for sig in env.signatures if sig.algorithm is algorithm)


def other_office_signature(s: Setup, keep_key_id: bool) -> Envelope:
    thief = s.offices[C].signing_key(Algorithm.ED25519)
    mine = signature_of(s.env, Algorithm.ED25519)
    forged = Signature(
        mine.key_id if keep_key_id else primitives.key_id(Algorithm.ED25519, primitives.public_bytes(thief)),
        Algorithm.ED25519,
        primitives.sign(thief, s.env.header_bytes, HEADER_SIGNING_CONTEXT),
    )
    return dataclasses.replace(s.env, signatures=(forged, *s.env.signatures[1:]))


def key_change(s: Setup, algorithm: Algorithm, **changes: Any) -> Directory:
    return s.kit.replace_key(s.directory, SENDER, signature_of(s.env, algorithm).key_id, **changes)


def swap_enc(env: Envelope) -> Envelope:
    w0, w1 = env.header.wrapped_keys
    return with_header(
        env, wrapped_keys=(dataclasses.replace(w0, enc=w1.enc), dataclasses.replace(w1, enc=w0.enc))
    )


def ciphertext_flip(s: Setup, where: float) -> Attempt:
    ct = s.env.ciphertext
    return wire(dataclasses.replace(s.env, ciphertext=flip(ct, min(int(len(ct) * where), len(ct) - 1))), s)


# --- the table -------------------------------------------------------------------------

CASES: list[tuple[str, Callable[[Setup], Attempt], type[Exception]]] = [
    # the signed context, one field at a time
    (
        "ctx-message-id",
        lambda s: wire(with_context(s.env, message_id=other_hex(s.env.header.context.message_id)), s),
        errors.SignatureError,
    ),
    ("ctx-sender-other-office", lambda s: wire(with_context(s.env, sender=C), s), errors.KeyNotValidError),
    ("ctx-recipients", lambda s: wire(with_context(s.env, recipients=(A, C)), s), errors.SignatureError),
    ("ctx-kind", lambda s: wire(with_context(s.env, kind=Kind.CASE_MESSAGE), s), errors.SignatureError),
    (
        "ctx-priority",
        lambda s: wire(with_context(s.env, priority=Priority.ROUTINE), s),
        errors.SignatureError,
    ),
    ("ctx-case-id", lambda s: wire(with_context(s.env, case_id="case-1"), s), errors.SignatureError),
    (
        "ctx-in-reply-to",
        lambda s: wire(with_context(s.env, in_reply_to=s.env.header.context.message_id), s),
        errors.SignatureError,
    ),
    ("ctx-created", lambda s: wire(with_context(s.env, created_ms=NOW - 1), s), errors.SignatureError),
    (
        "ctx-expires",
        lambda s: wire(with_context(s.env, expires_ms=NOW + 7_200_000), s),
        errors.SignatureError,
    ),
    (
        "ctx-handling",
        lambda s: wire(with_context(s.env, handling=Handling.CONFIDENTIAL), s),
        errors.SignatureError,
    ),
    ("ctx-suite", lambda s: wire(with_context(s.env, suite=Suite.CLASSIC), s), errors.SignatureError),
    (
        "ctx-body-size",
        lambda s: wire(with_context(s.env, body_size=s.env.header.context.body_size + 1), s),
        errors.SignatureError,
    ),
    (
        "ctx-signing-key-id",
        lambda s: wire(
            with_context(
                s.env,
                signing_key_ids=(
                    other_hex(s.env.header.context.signing_key_ids[0]),
                    s.env.header.context.signing_key_ids[1],
                ),
            ),
            s,
        ),
        errors.KeyNotValidError,
    ),
    # the rest of the header
    (
        "header-digest",
        lambda s: wire(with_header(s.env, ciphertext_digest=flip(s.env.header.ciphertext_digest, 5)), s),
        errors.SignatureError,
    ),
    (
        "wrapped-0-enc",
        lambda s: wire(with_wrapped(s.env, 0, enc=flip(s.env.header.wrapped_keys[0].enc, 100)), s),
        errors.SignatureError,
    ),
    (
        "wrapped-1-enc",
        lambda s: wire(with_wrapped(s.env, 1, enc=flip(s.env.header.wrapped_keys[1].enc, 1000)), s),
        errors.SignatureError,
    ),
    (
        "wrapped-0-key-id",
        lambda s: wire(with_wrapped(s.env, 0, key_id=other_hex(s.env.header.wrapped_keys[0].key_id)), s),
        errors.SignatureError,
    ),
    ("wrapped-1-recipient", lambda s: wire(with_wrapped(s.env, 1, recipient=C), s), errors.SignatureError),
    (
        "header-bytes-raw-flip",
        lambda s: wire(
            dataclasses.replace(s.env, header_bytes=flip(s.env.header_bytes, len(s.env.header_bytes) // 2)), s
        ),
        errors.SignatureError,
    ),
    ("swap-wrapped-keys", lambda s: wire(swap_enc(s.env), s), errors.SignatureError),
    ("swap-wrapped-keys-resigned", lambda s: wire(resign(swap_enc(s.env), s), s), errors.DecryptError),
    (
        "drop-wrapped-key",
        lambda s: wire(with_header(s.env, wrapped_keys=s.env.header.wrapped_keys[:1]), s),
        errors.SignatureError,
    ),
    (
        "drop-wrapped-key-resigned",
        lambda s: wire(resign(with_header(s.env, wrapped_keys=s.env.header.wrapped_keys[:1]), s), s),
        errors.CodecError,
    ),
    (
        "body-kind-lies-resigned",
        lambda s: wire(resign(with_context(s.env, kind=Kind.CASE_MESSAGE), s), s),
        errors.DecryptError,
    ),
    # ciphertext
    ("ciphertext-start", lambda s: ciphertext_flip(s, 0.0), errors.DigestMismatchError),
    ("ciphertext-middle", lambda s: ciphertext_flip(s, 0.5), errors.DigestMismatchError),
    ("ciphertext-end", lambda s: ciphertext_flip(s, 1.0), errors.DigestMismatchError),
    (
        "ciphertext-truncated",
        lambda s: wire(dataclasses.replace(s.env, ciphertext=s.env.ciphertext[:-1]), s),
        errors.DigestMismatchError,
    ),
    # signatures
    (
        "signature-other-office-same-key-id",
        lambda s: wire(other_office_signature(s, keep_key_id=True), s),
        errors.SignatureError,
    ),
    (
        "signature-other-office-own-key-id",
        lambda s: wire(other_office_signature(s, keep_key_id=False), s),
        errors.SignatureError,
    ),
    (
        "strip-ml-dsa",
        lambda s: wire(dataclasses.replace(s.env, signatures=s.env.signatures[:1]), s),
        errors.MissingSignatureError,
    ),
    (
        "no-signatures",
        lambda s: wire(dataclasses.replace(s.env, signatures=()), s),
        errors.MissingSignatureError,
    ),
    (
        "ml-dsa-flipped",
        lambda s: wire(
            dataclasses.replace(
                s.env,
                signatures=(
                    s.env.signatures[0],
                    dataclasses.replace(s.env.signatures[1], value=flip(s.env.signatures[1].value, 7)),
                ),
            ),
            s,
        ),
        errors.SignatureError,
    ),
    # keys and time
    (
        "revoked-key",
        lambda s: Attempt(
            encode_envelope(s.env),
            key_change(s, Algorithm.ML_DSA_65, status=KeyStatus.REVOKED, revoked_at_ms=NOW - 1),
        ),
        errors.KeyRevokedError,
    ),
    (
        "key-not-yet-valid",
        lambda s: Attempt(encode_envelope(s.env), key_change(s, Algorithm.ED25519, not_before_ms=NOW + 1)),
        errors.KeyNotValidError,
    ),
    (
        "key-expired",
        lambda s: Attempt(encode_envelope(s.env), key_change(s, Algorithm.ED25519, not_after_ms=NOW)),
        errors.KeyNotValidError,
    ),
    ("expired", lambda s: wire(s.env, s, now_ms=NOW + 3_600_000), errors.ExpiredError),
    ("future-beyond-skew", lambda s: wire(s.env, s, now_ms=NOW - 120_001), errors.ClockSkewError),
    (
        "ttl-beyond-maximum",
        lambda s: wire(s.env, s, directory=dataclasses.replace(s.directory, limits=Limits(max_ttl_s=60))),
        errors.ExpiredError,
    ),
    # directory membership and addressing
    (
        "unknown-sender",
        lambda s: wire(s.env, s, directory=s.kit.make_directory([s.offices[x] for x in (A, B, C)])),
        errors.UnknownSenderError,
    ),
    (
        "unknown-recipient",
        lambda s: wire(s.env, s, directory=s.kit.make_directory([s.offices[x] for x in (SENDER, A)])),
        errors.UnknownRecipientError,
    ),
    ("wrong-recipient", lambda s: wire(s.env, s, me=C), errors.NotARecipientError),
    (
        "wrong-private-key",
        lambda s: wire(
            s.env,
            s,
            my_keys=dict(zip(s.offices[A].encryption, s.offices[B].encryption.values(), strict=True)),
        ),
        errors.DecryptError,
    ),
    ("suite-downgrade", lambda s: wire(s.classic, s, directory=s.pq_directory), errors.SuiteNotAllowedError),
    # bytes
    ("truncated-envelope", lambda s: Attempt(encode_envelope(s.env)[:-40], s.directory), errors.CodecError),
    ("garbage", lambda s: Attempt(b"\xff" * 64, s.directory), errors.CodecError),
    (
        "oversize",
        lambda s: wire(
            s.env,
            s,
            directory=dataclasses.replace(
                s.directory, limits=Limits(max_body_bytes=100, max_envelope_bytes=1000)
            ),
        ),
        errors.OversizeError,
    ),
]


@pytest.fixture(scope="module")
def setup(offices, directory, pq_directory, kit) -> Setup:
    def make(suite: Suite) -> Envelope:
        return seal(
            BODY,
            sender=SENDER,
            sender_keys=offices[SENDER].signing,
            recipients=(A, B),
            directory=directory,
            suite=suite,
            now_ms=NOW,
            ttl_s=3600,
        )

    return Setup(offices, directory, pq_directory, kit, make(Suite.HYBRID_PQ), make(Suite.CLASSIC))


def test_untampered_envelope_opens(setup: Setup) -> None:
    for env in (setup.env, setup.classic):
        opened = open_envelope(
            encode_envelope(env),
            me=A,
            my_keys=setup.offices[A].encryption,
            directory=setup.directory,
            now_ms=NOW,
        )
        assert opened.body == BODY


@pytest.mark.parametrize(("make", "error"), [(m, e) for _, m, e in CASES], ids=[c[0] for c in CASES])
def test_tampered_envelope_is_refused(
    setup: Setup, make: Callable[[Setup], Attempt], error: type[Exception]
) -> None:
    attempt = make(setup)
    my_keys = attempt.my_keys if attempt.my_keys is not None else setup.offices[attempt.me].encryption
    with pytest.raises(error) as info:
        open_envelope(
            attempt.wire, me=attempt.me, my_keys=my_keys, directory=attempt.directory, now_ms=attempt.now_ms
        )
    # The precise class, not merely a parent of it (e.g. not SignatureError for a missing one).
    assert type(info.value) is error
