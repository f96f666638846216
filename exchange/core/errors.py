"""The exception tree of Liaison.

Every failure the pure core or a shell can report is one leaf here. Each leaf
names what failed (an office id, a key id, a field) and never carries message
content, key material or passphrases. ``reason`` is the rejection reason code
the gateway reports for it; ``grpc_status`` is the one gRPC status code a
service maps it to (by name, so this module needs no grpc import).

``map_exceptions`` is the boundary helper (httpcore's ``_exceptions.py`` is
the model): one table says which foreign exception becomes which of ours.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import ClassVar, TypeAlias

from exchange.core.model import Reason

__all__ = [
    "AccessDeniedError",
    "AttachmentCorruptError",
    "AttachmentMissingError",
    "ClientBusyError",
    "ClockSkewError",
    "CodecError",
    "ConfigError",
    "DecryptError",
    "DigestMismatchError",
    "DirectoryError",
    "DirectoryInvalidError",
    "DirectoryRollbackError",
    "DirectorySignatureError",
    "DuplicateError",
    "EnvelopeError",
    "ExceptionMapping",
    "ExpiredError",
    "KeyNotValidError",
    "KeyRevokedError",
    "KeystoreError",
    "LiaisonError",
    "MissingKeyError",
    "MissingSignatureError",
    "NotARecipientError",
    "NotFoundError",
    "OversizeError",
    "PolicyDeniedError",
    "RemoteError",
    "ReplayError",
    "SenderMismatchError",
    "SignatureError",
    "StoreError",
    "SuiteNotAllowedError",
    "TransportError",
    "UnknownOfficeError",
    "UnknownRecipientError",
    "UnknownSenderError",
    "WrongPassphraseError",
    "map_exceptions",
    "reason",
]


class LiaisonError(Exception):
    """Base of every error Liaison raises on purpose."""

    reason: ClassVar[Reason] = Reason.MALFORMED
    grpc_status: ClassVar[str] = "INVALID_ARGUMENT"


class ConfigError(LiaisonError):
    """A configuration file or option is missing or wrong."""

    grpc_status = "FAILED_PRECONDITION"


class StoreError(LiaisonError):
    """A durable store (SQLite, PostgreSQL) failed to read or write."""

    grpc_status = "UNAVAILABLE"


class TransportError(LiaisonError):
    """The message bus (NATS/JetStream) is unreachable, timed out or has no responder."""

    grpc_status = "UNAVAILABLE"


class KeystoreError(LiaisonError):
    """A keystore could not be created, read or opened."""

    grpc_status = "FAILED_PRECONDITION"


class WrongPassphraseError(KeystoreError):
    """The passphrase does not open the keystore."""


# --- bytes from the wire or disk -------------------------------------------------


class CodecError(LiaisonError):
    """Bytes that do not parse as the expected message, or break an invariant."""

    reason = Reason.MALFORMED


class OversizeError(CodecError):
    """Input larger than its named limit; refused before parsing."""

    reason = Reason.OVERSIZE
    grpc_status = "RESOURCE_EXHAUSTED"


# --- directory -------------------------------------------------------------------


class DirectoryError(LiaisonError):
    """The directory is unusable or does not know what was asked."""

    grpc_status = "FAILED_PRECONDITION"


class DirectoryInvalidError(DirectoryError):
    """The directory's content breaks an invariant (duplicate ids, bad threshold...)."""


class DirectorySignatureError(DirectoryError):
    """Fewer than the required m-of-n authorities signed the directory."""


class DirectoryRollbackError(DirectoryError):
    """The directory's version does not move forward from the trusted one."""


class UnknownOfficeError(DirectoryError):
    """The directory names no such office, gateway or authority."""

    grpc_status = "NOT_FOUND"


# --- envelope verification (one leaf per verification step) ---------------------


class EnvelopeError(LiaisonError):
    """An envelope failed one verification step."""


class UnknownSenderError(EnvelopeError):
    reason = Reason.UNKNOWN_SENDER


class UnknownRecipientError(EnvelopeError):
    reason = Reason.UNKNOWN_RECIPIENT


class SenderMismatchError(EnvelopeError):
    """The envelope claims a sender other than the office it came from."""

    reason = Reason.SENDER_MISMATCH
    grpc_status = "PERMISSION_DENIED"


class KeyNotValidError(EnvelopeError):
    """The key is unknown for the office or outside its validity window."""

    reason = Reason.KEY_NOT_VALID


class KeyRevokedError(EnvelopeError):
    """The key was revoked at or before the message's creation time."""

    reason = Reason.KEY_REVOKED


class SuiteNotAllowedError(EnvelopeError):
    """The suite is below the directory's minimum (a downgrade)."""

    reason = Reason.SUITE_NOT_ALLOWED


class SignatureError(EnvelopeError):
    """A signature does not verify over the exact header bytes."""

    reason = Reason.BAD_SIGNATURE


class MissingSignatureError(SignatureError):
    """A signature the suite requires is absent (e.g. ML-DSA stripped)."""


class NotARecipientError(EnvelopeError):
    """This office is not among the envelope's recipients."""

    reason = Reason.UNKNOWN_RECIPIENT
    grpc_status = "PERMISSION_DENIED"


class ExpiredError(EnvelopeError):
    reason = Reason.EXPIRED


class ClockSkewError(EnvelopeError):
    """Created further in the future than the directory's allowed skew."""

    reason = Reason.CLOCK_SKEW


class DigestMismatchError(EnvelopeError):
    """The ciphertext is not the one the signed header commits to."""

    reason = Reason.DIGEST_MISMATCH


class DecryptError(EnvelopeError):
    """The content key or content does not decrypt (authentication failed)."""

    reason = Reason.DIGEST_MISMATCH


class MissingKeyError(DecryptError):
    """Wrapped to a key this node does not hold (yet): a rotation its keystore has not had."""


class PolicyDeniedError(EnvelopeError):
    reason = Reason.POLICY_DENIED
    grpc_status = "PERMISSION_DENIED"


class ReplayError(EnvelopeError):
    """A message id already seen (replay or duplicate)."""

    reason = Reason.REPLAY
    grpc_status = "ALREADY_EXISTS"


class AttachmentCorruptError(EnvelopeError):
    """An attachment chunk or the whole attachment does not match its manifest (tampered,
    reordered, dropped, truncated, or the wrong key)."""

    reason = Reason.DIGEST_MISMATCH
    grpc_status = "DATA_LOSS"


class AttachmentMissingError(LiaisonError):
    """An attachment chunk is not (or no longer) on the attachment stream."""

    grpc_status = "FAILED_PRECONDITION"


class AccessDeniedError(LiaisonError):
    """The caller's certificate does not give it this role."""

    grpc_status = "PERMISSION_DENIED"


class ClientBusyError(LiaisonError):
    """One client holds too many calls at once."""

    grpc_status = "RESOURCE_EXHAUSTED"


class NotFoundError(LiaisonError):
    """No message, record or case with this id."""

    grpc_status = "NOT_FOUND"


class RemoteError(LiaisonError):
    """A node answered a call with an error status (client side of gRPC)."""

    def __init__(self, status: str, detail: str) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail


class DuplicateError(LiaisonError):
    """Something with this id was stored already."""

    grpc_status = "ALREADY_EXISTS"


ExceptionMapping: TypeAlias = Mapping[type[Exception], type[LiaisonError]]


def reason(e: BaseException) -> str:
    """A foreign exception in a few words: a file error's reason, never a decode error's bytes."""
    if isinstance(e, OSError):
        return e.strerror or type(e).__name__  # the caller's ``what`` names the file
    if isinstance(e, UnicodeDecodeError):  # str() would quote the offending bytes
        return "not UTF-8"
    if isinstance(e, RecursionError):
        return "nested too deeply"
    return str(e) or type(e).__name__


@contextlib.contextmanager
def map_exceptions(table: ExceptionMapping, what: str = "") -> Iterator[None]:
    """Re-raise a foreign exception of ``table`` as ours: ``raise Ours(f"{what}: {reason(e)}") from e``.

    Without ``what`` the message is ``reason(e)`` alone (for a ValueError of
    our own model, whose text already names the field). The first entry the
    exception is an instance of wins, so list subclasses before their bases;
    an exception not in the table passes unchanged (our own errors in
    particular).
    """
    try:
        yield
    except Exception as e:
        for foreign, ours in table.items():
            if isinstance(e, foreign):
                raise ours(f"{what}: {reason(e)}" if what else reason(e)) from e
        raise
