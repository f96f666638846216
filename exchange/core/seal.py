"""The envelope core: seal, verify and open messages; sign and verify statements.

Pure functions of bytes, domain values, a directory and an injected clock
(``now_ms``): no I/O, no global state. ``verify_envelope`` is what the
gateway runs (it never decrypts); ``open_envelope`` is what a recipient runs.
Every check raises one precise error from ``exchange.core.errors``.

This module does not remember message ids (replay and duplicate detection
need a store) and does not fetch or verify the directory itself.
"""

from __future__ import annotations

import dataclasses
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from exchange.core import errors, primitives
from exchange.core.attachments import MAX_ATTACHMENTS_PER_MESSAGE, check_against_header, sealed_size_of
from exchange.core.codec.body import decode_body, encode_body
from exchange.core.codec.envelope import (
    decode_envelope,
    decode_header,
    decode_signed_statement,
    decode_statement,
    encode_envelope,
    encode_header,
    encode_header_context,
    encode_statement,
)
from exchange.core.envelope import (
    ENVELOPE_VERSION,
    AttachmentDigest,
    Envelope,
    Header,
    HeaderContext,
    Signature,
    SignedStatement,
    Statement,
    WrappedKey,
    check_header_bounds,
)
from exchange.core.ids import new_message_id
from exchange.core.model import (
    Alert,
    AttachmentManifest,
    Body,
    CaseMessage,
    Directory,
    Handling,
    Kind,
    Office,
    Priority,
    PublicKey,
    Suite,
)

__all__ = [
    "CONTENT_KEY_BYTES",
    "HEADER_SIGNING_CONTEXT",
    "STATEMENT_SIGNING_CONTEXT",
    "EncodedBody",
    "Opened",
    "VerifiedHeader",
    "check_policy",
    "open_envelope",
    "seal",
    "sign_statement",
    "verify_envelope",
    "verify_statement",
    "wrap_info",
]

HEADER_SIGNING_CONTEXT = "envelope-header"
STATEMENT_SIGNING_CONTEXT = "statement"
CONTENT_KEY_BYTES = 32
_WRAP_INFO_PREFIX = b"liaison/v1/wrap\x00"
_AEAD_OVERHEAD = 12 + 16


@dataclass(frozen=True)
class VerifiedHeader:
    """An envelope whose header passed every check of ``verify_envelope``."""

    envelope: Envelope
    header_digest: bytes  # SHA-256 of the exact header bytes; receipts refer to it

    @property
    def context(self) -> HeaderContext:
        return self.envelope.header.context

    @property
    def message_id(self) -> str:
        return self.context.message_id

    @property
    def sender(self) -> str:
        return self.context.sender

    @property
    def recipients(self) -> tuple[str, ...]:
        return self.context.recipients

    @property
    def kind(self) -> Kind:
        return self.context.kind


@dataclass(frozen=True)
class Opened:
    header: VerifiedHeader
    body: Body
    body_bytes: bytes = field(repr=False)  # the decrypted plaintext ``body`` was decoded from, once


@dataclass(frozen=True)
class EncodedBody:
    """A body and its encoding, made once by the sender: sealed and stored as the same bytes."""

    body: Body
    data: bytes = field(repr=False)

    @classmethod
    def of(cls, body: Body) -> EncodedBody:
        return cls(body, encode_body(body))


def wrap_info(context_bytes: bytes, recipient: str, key_id: str) -> bytes:
    """HPKE info for one recipient: binds the wrapped key to this header, recipient and key."""
    return (
        _WRAP_INFO_PREFIX + primitives.sha256(context_bytes) + recipient.encode() + b"\x00" + key_id.encode()
    )


# --- sealing ------------------------------------------------------------------------


def _signing_keys(
    office: Office, keys: Sequence[primitives.PrivateKey], suite: Suite, now_ms: int
) -> list[tuple[str, primitives.PrivateKey]]:
    """For each algorithm the suite needs, the held private key the directory accepts now.

    The office's current directory key when it is held; otherwise (the directory
    already announces a rotation this node's keystore has not had yet) the newest
    held key the directory still lists as valid, e.g. a RETIRING key in its overlap.
    """
    by_id = {primitives.key_id(k.algorithm, primitives.public_bytes(k)): k for k in keys}
    chosen = []
    for algorithm in suite.signing_algorithms:
        current = office.current_key(algorithm, now_ms)
        if current is None:
            raise errors.KeyNotValidError(f"office {office.id} has no valid {algorithm.name} key")
        if current.key_id not in by_id:
            valid = [
                k
                for k in office.keys
                if k.key_id in by_id and k.algorithm is algorithm and k.valid_at(now_ms)
            ]
            if not valid:
                raise errors.KeyNotValidError(
                    f"no private key for {office.id}'s {algorithm.name} key {current.key_id}"
                )
            current = max(valid, key=lambda k: k.not_before_ms)
        chosen.append((current.key_id, by_id[current.key_id]))
    return chosen


def _recipient_offices(recipients: Sequence[str], directory: Directory) -> list[Office]:
    """The directory's entry of each recipient; ``UnknownRecipientError`` for one it lacks."""
    offices = []
    for recipient in recipients:
        office = directory.office(recipient)
        if office is None:
            raise errors.UnknownRecipientError(
                f"recipient office {recipient!r} is not in directory v{directory.version}"
            )
        offices.append(office)
    return offices


def seal(
    body: Body | EncodedBody | bytes,
    *,
    sender: str,
    sender_keys: Sequence[primitives.PrivateKey],
    recipients: Sequence[str],
    directory: Directory,
    suite: Suite,
    now_ms: int,
    ttl_s: int,
    case_id: str = "",
    in_reply_to: str = "",
    handling: Handling = Handling.OFFICIAL,
    message_id: str | None = None,
) -> Envelope:
    """Sign and encrypt ``body`` from ``sender`` to each of ``recipients``.

    ``body`` may be a domain body, a body encoded once by the caller (``EncodedBody``:
    the node stores the same bytes it seals) or encoded bytes. The header's case id
    defaults to a case message's own. Raises the same errors a verifier
    would (unknown office, no valid key, suite below minimum, oversize) so
    that a node never emits an envelope the gateway must refuse.
    """
    limits = directory.limits
    # Recipients first: the first thing a sender is told about a misaddressed message.
    recipient_offices = _recipient_offices(recipients, directory)
    if isinstance(body, bytes):
        parsed, body_bytes = decode_body(body, limits.max_body_bytes), body
    elif isinstance(body, EncodedBody):
        parsed, body_bytes = body.body, body.data
    else:
        parsed, body_bytes = body, encode_body(body)
    if len(body_bytes) > limits.max_body_bytes:
        raise errors.OversizeError(f"body is {len(body_bytes)} bytes, limit {limits.max_body_bytes}")
    if suite < limits.minimum_suite:
        raise errors.SuiteNotAllowedError(f"suite {suite.label} is below {limits.minimum_suite.label}")
    if not 0 < ttl_s <= limits.max_ttl_s:
        raise ValueError(f"ttl {ttl_s}s outside 1..{limits.max_ttl_s}")
    if len(recipients) > limits.max_recipients:
        raise errors.OversizeError(f"{len(recipients)} recipients, limit {limits.max_recipients}")
    office = directory.office(sender)
    if office is None:
        raise errors.UnknownSenderError(f"unknown sender office {sender}")
    signers = _signing_keys(office, sender_keys, suite, now_ms)
    kem_keys: list[PublicKey] = []
    for recipient, r_office in zip(recipients, recipient_offices, strict=True):
        kem = r_office.current_key(suite.kem_algorithm, now_ms)
        if kem is None:
            raise errors.KeyNotValidError(f"office {recipient} has no valid {suite.kem_algorithm.name} key")
        kem_keys.append(kem)
    if isinstance(parsed, CaseMessage) and not case_id:
        case_id = parsed.case_id
    # External attachments are announced in the signed header (no key): the gateway can
    # check their chunks and the audit log commits to them through the header digest.
    external = _external(parsed)
    if len(external) > MAX_ATTACHMENTS_PER_MESSAGE:
        raise errors.OversizeError(f"{len(external)} attachments, limit {MAX_ATTACHMENTS_PER_MESSAGE}")
    if any(m.owner != sender for m in external):
        raise errors.AttachmentCorruptError("an external attachment belongs to another office")

    context = HeaderContext(
        version=ENVELOPE_VERSION,
        message_id=message_id or new_message_id(now_ms),
        sender=sender,
        recipients=tuple(recipients),
        kind=parsed.kind,
        priority=parsed.priority if isinstance(parsed, Alert) else Priority.ROUTINE,
        case_id=case_id,
        in_reply_to=in_reply_to,
        created_ms=now_ms,
        expires_ms=now_ms + ttl_s * 1000,
        handling=handling,
        suite=suite,
        signing_key_ids=tuple(kid for kid, _ in signers),
        body_size=len(body_bytes),
        attachments=tuple(
            AttachmentDigest(m.id, m.owner, sealed_size_of(m), m.chunk_count, m.root) for m in external
        ),
    )
    check_header_bounds(context)
    context_bytes = encode_header_context(context)
    content_key = primitives.random_bytes(CONTENT_KEY_BYTES)
    ciphertext = primitives.aead_seal(content_key, body_bytes, aad=context_bytes)
    wrapped = tuple(
        WrappedKey(
            recipient,
            kem.key_id,
            primitives.wrap(
                kem.algorithm, kem.public, content_key, wrap_info(context_bytes, recipient, kem.key_id)
            ),
        )
        for recipient, kem in zip(recipients, kem_keys, strict=True)
    )
    header = Header(context, context_bytes, primitives.sha256(ciphertext), wrapped)
    header_bytes = encode_header(header)
    signatures = tuple(
        Signature(kid, key.algorithm, primitives.sign(key, header_bytes, HEADER_SIGNING_CONTEXT))
        for kid, key in signers
    )
    envelope = Envelope(header, header_bytes, signatures, ciphertext)
    size = len(encode_envelope(envelope))
    if size > limits.max_envelope_bytes:
        raise errors.OversizeError(f"envelope is {size} bytes, limit {limits.max_envelope_bytes}")
    return envelope


# --- verification (the gateway's checks) -----------------------------------------------


def verify_envelope(
    envelope: bytes | Envelope, *, directory: Directory, now_ms: int, stored_ms: int = 0
) -> VerifiedHeader:
    """Check everything about an envelope that needs no private key; raise on the first failure.

    ``stored_ms`` is when the backbone first stored the frame (JetStream's own
    timestamp; 0 when unknown): keys are judged no earlier than that.
    """
    limits = directory.limits
    # 1. Size before parsing. Stops: memory and CPU exhaustion by huge input.
    size = (
        len(envelope)
        if isinstance(envelope, bytes)
        else len(envelope.header_bytes) + len(envelope.ciphertext)
    )
    if size > limits.max_envelope_bytes:
        raise errors.OversizeError(f"envelope is {size} bytes, limit {limits.max_envelope_bytes}")
    # 2. Parse (header and context kept as the exact bytes received). Stops: malformed input.
    #    A parsed envelope is re-parsed from its header bytes: only what was signed counts.
    if isinstance(envelope, bytes):
        env = decode_envelope(envelope, limits.max_envelope_bytes)
    else:
        env = dataclasses.replace(envelope, header=decode_header(envelope.header_bytes))
    ctx = env.header.context
    if ctx.body_size > limits.max_body_bytes:
        raise errors.OversizeError(f"body is {ctx.body_size} bytes, limit {limits.max_body_bytes}")
    if len(ctx.recipients) > limits.max_recipients:
        raise errors.OversizeError(f"{len(ctx.recipients)} recipients, limit {limits.max_recipients}")
    if len(ctx.attachments) > MAX_ATTACHMENTS_PER_MESSAGE:
        raise errors.OversizeError(f"{len(ctx.attachments)} attachments, limit {MAX_ATTACHMENTS_PER_MESSAGE}")
    # External attachments live under the sender's own attachment subjects. Stops: an
    # office announcing (and so getting a recipient to fetch) another office's chunks.
    if any(a.owner != ctx.sender for a in ctx.attachments):
        raise errors.SenderMismatchError(f"message {ctx.message_id} announces another office's attachment")
    # 3. Known sender. Stops: messages from parties outside the directory.
    office = directory.office(ctx.sender)
    if office is None:
        raise errors.UnknownSenderError(f"unknown sender office {ctx.sender}")
    # 4. Suite at least the directory's minimum. Stops: downgrade to weaker cryptography.
    if ctx.suite < limits.minimum_suite:
        raise errors.SuiteNotAllowedError(f"suite {ctx.suite.label} is below {limits.minimum_suite.label}")
    # 5. Every signing key named is the sender's. Stops: signing with another party's key.
    keys: dict[str, PublicKey] = {}
    for kid in ctx.signing_key_ids:
        key = office.key(kid)
        if key is None or not key.algorithm.is_signing:
            raise errors.KeyNotValidError(f"key {kid} is not a signing key of {office.id}")
        keys[kid] = key
    # 6. Keys valid when signed, judged no earlier than the backbone stored the frame:
    #    ``created_ms`` is the sender's claim. Stops: use of revoked or expired keys, and
    #    a stolen key outliving its revocation by backdating ``created_ms``.
    judged = max(ctx.created_ms, stored_ms)
    for key in keys.values():
        if key.revoked_at(judged):
            raise errors.KeyRevokedError(f"key {key.key_id} of {office.id} is revoked")
        if not key.in_window(judged):
            raise errors.KeyNotValidError(f"key {key.key_id} of {office.id} is outside its validity window")
    # 7. A signature for every algorithm the suite requires and every named key, each
    #    verifying over the exact header bytes. Stops: tampering, stripping the ML-DSA
    #    signature, re-serialisation ambiguities.
    _check_signatures(env.signatures, keys, ctx.suite, env.header_bytes, HEADER_SIGNING_CONTEXT)
    # 8. Recipients known; exactly one wrapped key each, to a key of theirs valid at
    #    creation. Stops: routing to unknown parties, recipients who cannot open.
    _check_recipients(env.header, directory, judged)
    # 9. Not expired, lifetime within the maximum. Stops: stale and indefinitely replayable messages.
    if now_ms >= ctx.expires_ms:
        raise errors.ExpiredError(f"message {ctx.message_id} expired")
    if ctx.expires_ms - ctx.created_ms > limits.max_ttl_s * 1000:
        raise errors.ExpiredError(f"message {ctx.message_id} lifetime exceeds {limits.max_ttl_s}s")
    # 10. Not from the future. Stops: pre-dated messages that outlive key revocation.
    if ctx.created_ms > now_ms + limits.max_clock_skew_s * 1000:
        raise errors.ClockSkewError(f"message {ctx.message_id} is created in the future")
    # 11. Ciphertext is the one the header commits to. Stops: ciphertext substitution.
    if not hmac.compare_digest(primitives.sha256(env.ciphertext), env.header.ciphertext_digest):
        raise errors.DigestMismatchError(f"ciphertext of {ctx.message_id} does not match its digest")
    if len(env.ciphertext) != ctx.body_size + _AEAD_OVERHEAD:
        raise errors.CodecError("ciphertext length does not match the declared body size")
    return VerifiedHeader(env, primitives.sha256(env.header_bytes))


def _check_signatures(
    signatures: tuple[Signature, ...],
    keys: Mapping[str, PublicKey],
    suite: Suite,
    message: bytes,
    context: str,
) -> None:
    signed_by = [s.key_id for s in signatures]
    if len(set(signed_by)) != len(signed_by):
        raise errors.SignatureError("a key signed twice")
    unnamed = set(signed_by) - set(keys)
    if unnamed:
        raise errors.SignatureError("signature by a key the signed data does not name")
    missing_keys = set(keys) - set(signed_by)
    if missing_keys:
        raise errors.MissingSignatureError(f"no signature by named key(s) {', '.join(sorted(missing_keys))}")
    algorithms = {keys[s.key_id].algorithm for s in signatures}
    for algorithm in suite.signing_algorithms:
        if algorithm not in algorithms:
            raise errors.MissingSignatureError(f"suite {suite.label} requires a {algorithm.name} signature")
    for sig in signatures:
        key = keys[sig.key_id]
        if sig.algorithm is not key.algorithm:
            raise errors.SignatureError(f"signature algorithm does not match key {key.key_id}")
        primitives.verify(key.algorithm, key.public, sig.value, message, context)


def _check_recipients(header: Header, directory: Directory, judged_ms: int) -> None:
    ctx = header.context
    for recipient in ctx.recipients:
        if directory.office(recipient) is None:
            raise errors.UnknownRecipientError(f"unknown recipient office {recipient}")
    wrapped_for = [w.recipient for w in header.wrapped_keys]
    if sorted(wrapped_for) != sorted(ctx.recipients):
        raise errors.CodecError("wrapped keys are not exactly one per recipient")
    for w in header.wrapped_keys:
        office = directory.office(w.recipient)
        key = office.key(w.key_id) if office else None
        if key is None or key.algorithm is not ctx.suite.kem_algorithm:
            raise errors.KeyNotValidError(f"key {w.key_id} is not a {ctx.suite.label} key of {w.recipient}")
        if key.revoked_at(judged_ms):
            raise errors.KeyRevokedError(f"key {w.key_id} of {w.recipient} is revoked")
        if not key.in_window(judged_ms):
            raise errors.KeyNotValidError(f"key {w.key_id} of {w.recipient} is outside its validity window")


def check_policy(header: VerifiedHeader | HeaderContext, directory: Directory) -> None:
    """Raise PolicyDeniedError unless the policy lets the sender send this kind to every recipient."""
    ctx = header.context if isinstance(header, VerifiedHeader) else header
    for recipient in ctx.recipients:
        if not directory.allows(ctx.sender, ctx.kind, recipient):
            raise errors.PolicyDeniedError(f"{ctx.sender} may not send {ctx.kind.label} to {recipient}")


# --- opening (the recipient's checks) ----------------------------------------------------


def open_envelope(
    envelope: bytes | Envelope,
    *,
    me: str,
    my_keys: Mapping[str, primitives.PrivateKey],
    directory: Directory,
    now_ms: int,
) -> Opened:
    """Verify, then decrypt as recipient ``me`` using its encryption keys by key id."""
    verified = verify_envelope(envelope, directory=directory, now_ms=now_ms)
    env = verified.envelope
    ctx = env.header.context
    wrapped = env.header.wrapped_for(me)
    if me not in ctx.recipients or wrapped is None:
        raise errors.NotARecipientError(f"{me} is not a recipient of {ctx.message_id}")
    key = my_keys.get(wrapped.key_id)
    if key is None:
        raise errors.MissingKeyError(f"{me} holds no private key {wrapped.key_id}")
    info = wrap_info(env.header.context_bytes, me, wrapped.key_id)
    content_key = primitives.unwrap(key, wrapped.enc, info)
    body_bytes = primitives.aead_open(content_key, env.ciphertext, aad=env.header.context_bytes)
    body = decode_body(body_bytes, directory.limits.max_body_bytes)
    if body.kind is not ctx.kind:
        raise errors.CodecError(f"body is a {body.kind.label}, header says {ctx.kind.label}")
    if isinstance(body, Alert) and body.priority is not ctx.priority:
        raise errors.CodecError("alert priority differs from the header's")
    if isinstance(body, CaseMessage) and ctx.case_id and body.case_id != ctx.case_id:
        raise errors.CodecError("case id differs from the header's")
    # The body's manifests (with the keys) must be exactly the attachments the signed
    # header announced. Stops: a body pointing at chunks the gateway never saw announced.
    external = _external(body)
    if len(external) != len(ctx.attachments):
        raise errors.AttachmentCorruptError("body and header announce different attachments")
    for manifest, digest in zip(external, ctx.attachments, strict=True):
        check_against_header(manifest, digest)
    return Opened(verified, body, body_bytes)


def _external(body: Body) -> tuple[AttachmentManifest, ...]:
    return tuple(a.external for a in body.attachments if a.external is not None)


# --- statements (receipts and rejections) ------------------------------------------------


def sign_statement(statement: Statement, keys: Sequence[primitives.PrivateKey]) -> SignedStatement:
    """Sign a receipt or rejection with each of the signer's signing keys."""
    data = encode_statement(statement)
    signatures = tuple(
        Signature(
            primitives.key_id(k.algorithm, primitives.public_bytes(k)),
            k.algorithm,
            primitives.sign(k, data, STATEMENT_SIGNING_CONTEXT),
        )
        for k in keys
    )
    return SignedStatement(statement, data, signatures)


def verify_statement(
    signed: SignedStatement | bytes, *, directory: Directory, now_ms: int, stored_ms: int = 0
) -> Statement:
    """Check a signed statement against its signer (office or gateway) in the directory.

    Returns the statement parsed from the signed bytes. What it says (state,
    signer's role, message) is for the caller's rules (``exchange.core.receipts``,
    ``gateway.decide``). The plan:

    (1) size, then parse; the statement is taken from the signed bytes;
    (2) the signer is an office or gateway of the directory;
    (3) each signing key named is the signer's and was valid when it signed,
        judged no earlier than ``stored_ms`` (when the backbone stored it; 0: unknown);
    (4) a signature for every algorithm of the directory's minimum suite, each
        over the exact statement bytes;
    (5) not dated in the future (``max_clock_skew_s``), nor longer ago than a
        message may live (``max_ttl_s``).
    """
    # (1): size before parsing (decode_signed_statement checks its limit first), and
    #     only what was signed counts, never a parsed copy. Stops: memory exhaustion,
    #     malformed input, a statement that differs from its signed bytes.
    s = decode_signed_statement(signed) if isinstance(signed, bytes) else signed
    st = decode_statement(s.statement_bytes)
    # (2): known signer. Stops: statements forged by parties outside the directory.
    holder = directory.office(st.signer) or directory.gateway(st.signer)
    if holder is None:
        raise errors.UnknownSenderError(f"unknown statement signer {st.signer}")
    # (3): keys belong to the signer and were valid when it signed. Stops: signing with
    #     another party's key, or with a revoked or expired one.
    #     ``at_ms`` is the signer's claim. Stops: a stolen key outliving its revocation by
    #     backdating.
    judged = max(st.at_ms, stored_ms)
    keys: dict[str, PublicKey] = {}
    for sig in s.signatures:
        key = holder.key(sig.key_id)
        if key is None or not key.algorithm.is_signing:
            raise errors.KeyNotValidError(f"key {sig.key_id} is not a signing key of {holder.id}")
        if key.revoked_at(judged):
            raise errors.KeyRevokedError(f"key {key.key_id} of {holder.id} is revoked")
        if not key.in_window(judged):
            raise errors.KeyNotValidError(f"key {key.key_id} of {holder.id} is outside its validity window")
        keys[key.key_id] = key
    # (4): every algorithm the minimum suite requires, over the exact statement bytes.
    #     Stops: tampering, stripping the ML-DSA signature.
    _check_signatures(
        s.signatures, keys, directory.limits.minimum_suite, s.statement_bytes, STATEMENT_SIGNING_CONTEXT
    )
    # (5): not from the future. Stops: pre-dated statements that outlive key revocation.
    if st.at_ms > now_ms + directory.limits.max_clock_skew_s * 1000:
        raise errors.ClockSkewError(f"statement by {holder.id} is dated in the future")
    #     Nor older than a message may live. Stops: statements dated long ago (before
    #     a revocation, before the message) being passed off as current.
    if st.at_ms < now_ms - directory.limits.max_ttl_s * 1000:
        limit = directory.limits.max_ttl_s
        raise errors.ExpiredError(f"statement by {holder.id} is dated more than {limit}s ago")
    return st
