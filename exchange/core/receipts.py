"""The recipient's and the sender's checks on statements, beside the gateway's ``decide``.

Pure functions of verified statements, the directory and what the office's
own store says about a message (passed in as data): no I/O, no ``await``.
Each returns None or raises one precise error from ``exchange.core.errors``.

- ``check_stamp``: the gateway's STAMPED receipt on mail routed to this office,
  and its proof that the message is in the log (``exchange.core.logproof``).
- ``check_statement``: who may sign a receipt or rejection about a message this
  office sent, and that it is about what this office sent; the rules are small
  policies (``AboutSentMessage``, ``SignedByGateway``, ``SignedByRecipient``)
  whose ``verify()`` returns None or raises, composed with ``AllOf`` (the shape
  of sigstore-python's ``verify/policy.py``); ``ProvesInclusion`` is the
  sender's check of a STAMPED receipt's log proof.

What it does not do: verify signatures (``seal.verify_statement`` does, first),
read the store or decide what is logged or kept.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from exchange.core.envelope import Receipt, Rejection, Statement
from exchange.core.errors import ClockSkewError, NotFoundError, SignatureError
from exchange.core.logproof import LogProof, check_inclusion
from exchange.core.merkle import InclusionProofError
from exchange.core.model import Directory, ReceiptState

__all__ = [
    "AboutSentMessage",
    "AllOf",
    "ProvesInclusion",
    "SentMessage",
    "SignedByGateway",
    "SignedByRecipient",
    "StatementPolicy",
    "check_stamp",
    "check_statement",
    "statement_policy",
]


def check_stamp(
    stamp: Statement,
    *,
    message_id: str,
    header_digest: bytes,
    directory: Directory,
    proof: LogProof | None,
) -> None:
    """Raise unless ``stamp`` is the gateway's stamp on this very envelope, proven logged.

    ``SignatureError`` for a stamp that is not the gateway's on this envelope;
    ``InclusionProofError`` (an ``AuditError``) when the log proof is missing or fails.

    ``stamp`` has passed ``seal.verify_statement`` (signatures, signer known, keys
    valid, not from the future). The plan:

    (1) it is a receipt, not a rejection;
    (2) its state is STAMPED;
    (3) its signer is a gateway of the directory;
    (4) it names this message id;
    (5) it names the digest of this envelope's exact header bytes;
    (6) a log proof travelled with it;
    (7) the proof shows this envelope's ACCEPTED record at the stamp's log index, in a
        tree head the same gateway signed (``logproof.check_inclusion``).
    """
    # (1), (2): only the gateway's STAMPED receipt says "audited, then routed".
    #     Stops: an office's own receipt (or a rejection) passed off as the gateway's stamp.
    if not isinstance(stamp, Receipt):
        raise SignatureError(f"message {message_id} lacks a valid gateway stamp: it is a rejection")
    if stamp.state is not ReceiptState.STAMPED:
        raise SignatureError(f"message {message_id} lacks a valid gateway stamp: state {stamp.state.name}")
    # (3): signed by a gateway. Stops: an office stamping mail past the audit log.
    if directory.gateway(stamp.signer) is None:
        raise SignatureError(
            f"message {message_id} lacks a valid gateway stamp: {stamp.signer} is not a gateway"
        )
    # (4), (5): the stamp is about this envelope. Stops: a stamp of one message
    #     lifted onto another (or onto a changed header of the same message id).
    if stamp.message_id != message_id:
        raise SignatureError(f"message {message_id} lacks a valid gateway stamp: it names another message")
    if not hmac.compare_digest(stamp.header_digest, header_digest):
        raise SignatureError(f"message {message_id} lacks a valid gateway stamp: it names another header")
    # (6), (7): the stamp's claim "audited" is checked against the log itself. Stops: a
    #     gateway (or a holder of its key) stamping a log index that is not in the log.
    if proof is None:
        raise InclusionProofError(f"message {message_id}: the stamp carries no proof that it was logged")
    check_inclusion(
        proof,
        message_id=message_id,
        header_digest=header_digest,
        log_index=stamp.log_index,
        gateway=stamp.signer,
        directory=directory,
    )


@dataclass(frozen=True)
class SentMessage:
    """What this office's store says about a message it sent (passed in as data)."""

    recipients: tuple[str, ...]
    header_digest: bytes
    created_ms: int


@dataclass(frozen=True)
class AboutSentMessage:
    """The statement is about this office's message: its sender and, when known, its header.

    ``sent`` is None when the office has no record of the message (something sent
    under its name elsewhere): then only the sender is checked. ``max_skew_ms``
    bounds how long before the message's creation a statement about it may be dated.
    """

    office: str
    sent: SentMessage | None
    max_skew_ms: int

    def verify(self, statement: Statement) -> None:
        what = "rejection of" if isinstance(statement, Rejection) else "receipt for"
        # Stops: a statement about another office's message with the same id (e.g. the
        # gateway's rejection of a recipient's re-submission) marking this office's.
        if statement.sender != self.office:
            raise SignatureError(
                f"{what} {statement.message_id} names sender {statement.sender!r}, not {self.office}"
            )
        if self.sent is None:
            return
        # Stops: a statement about another header under the same message id.
        if not hmac.compare_digest(statement.header_digest, self.sent.header_digest):
            raise SignatureError(f"{what} {statement.message_id} names another header digest")
        # Stops: a statement dated before the message existed (backdated to before a revocation).
        if statement.at_ms < self.sent.created_ms - self.max_skew_ms:
            raise ClockSkewError(f"{what} {statement.message_id} is dated before the message was created")


class StatementPolicy(Protocol):
    """A rule about a verified statement: ``verify`` returns None or raises."""

    def verify(self, statement: Statement) -> None: ...


@dataclass(frozen=True)
class SignedByGateway:
    """The statement is signed by a gateway of the directory."""

    directory: Directory
    what: str  # how the error names the statement: "rejection of", "STAMPED receipt for"

    def verify(self, statement: Statement) -> None:
        if self.directory.gateway(statement.signer) is None:
            raise SignatureError(f"{self.what} {statement.message_id} not signed by a gateway")


@dataclass(frozen=True)
class SignedByRecipient:
    """A receipt signed by one of the message's recipients, about itself."""

    recipients: tuple[str, ...]

    def verify(self, statement: Statement) -> None:
        recipient = statement.recipient if isinstance(statement, Receipt) else ""
        if statement.signer not in self.recipients or recipient != statement.signer:
            raise SignatureError(f"receipt for {statement.message_id} signed by a non-recipient")


@dataclass(frozen=True)
class ProvesInclusion:
    """A STAMPED receipt carries a proof that the message's ACCEPTED record is in the log."""

    proof: LogProof | None
    directory: Directory

    def verify(self, statement: Statement) -> None:
        if self.proof is None:
            raise InclusionProofError(f"STAMPED receipt for {statement.message_id} carries no log proof")
        check_inclusion(
            self.proof,
            message_id=statement.message_id,
            header_digest=statement.header_digest,
            log_index=statement.log_index,
            gateway=statement.signer,
            directory=self.directory,
        )


@dataclass(frozen=True)
class AllOf:
    """Every policy holds (checked in order; the first failure raises)."""

    policies: Sequence[StatementPolicy]

    def verify(self, statement: Statement) -> None:
        for policy in self.policies:
            policy.verify(statement)


def statement_policy(
    statement: Statement,
    *,
    office: str,
    sent: SentMessage | None,
    directory: Directory,
    proof: LogProof | None = None,
) -> StatementPolicy:
    """The rule for a statement about a message this office (``office``) sent.

    ``sent`` is what the office's store says about the message, or None when the
    office has no record of it. The plan:

    (0) it names this office as the message's sender and, when the office sent it,
        that message's header digest, and is not dated before its creation;
    (1) a rejection must come from a gateway (whether or not the office knows the
        message: one sent under its name elsewhere is still shown);
    (2) a receipt must be about a message this office sent;
    (3) STAMPED: signed by a gateway, with a proof that the record is in its log;
    (4) DELIVERED and READ: signed by a recipient, about itself;
    (5) ACCEPTED: any verified signer (the office's own, read back).
    """
    about = AboutSentMessage(office, sent, directory.limits.max_clock_skew_s * 1000)  # (0)
    # (1): Stops: an office forging a refusal of another office's message.
    if isinstance(statement, Rejection):
        return AllOf((about, SignedByGateway(directory, "rejection of")))
    # (2): Stops: receipts about messages this office never sent filling its store.
    if sent is None:
        raise NotFoundError(f"receipt about message {statement.message_id} this office did not send")
    # (3): Stops: an office claiming the gateway audited a message, and a gateway
    #     claiming it logged a message that is not in its log.
    if statement.state is ReceiptState.STAMPED:
        return AllOf(
            (about, SignedByGateway(directory, "STAMPED receipt for"), ProvesInclusion(proof, directory))
        )
    # (4): Stops: a third office confirming delivery on a recipient's behalf.
    if statement.state in (ReceiptState.DELIVERED, ReceiptState.READ):
        return AllOf((about, SignedByRecipient(sent.recipients)))
    # (5)
    return about


def check_statement(
    statement: Statement,
    *,
    office: str,
    sent: SentMessage | None,
    directory: Directory,
    proof: LogProof | None = None,
) -> None:
    """Raise unless ``statement`` (verified) is about what ``office`` sent and its signer may say it.

    ``proof`` is the log proof that travelled with the statement (needed for STAMPED).
    """
    statement_policy(statement, office=office, sent=sent, directory=directory, proof=proof).verify(statement)
