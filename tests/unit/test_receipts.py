"""The recipient's and sender's statement rules (``exchange.core.receipts``), as tables.

The statements here are built directly (their signatures are ``verify_statement``'s
business, tested in test_seal.py); each case changes one thing from a valid one.
"""

from __future__ import annotations

import dataclasses

import pytest

from exchange.core import errors
from exchange.core.envelope import Receipt, Rejection, Statement
from exchange.core.model import Directory, Reason, ReceiptState
from exchange.core.receipts import (
    AllOf,
    SentMessage,
    SignedByGateway,
    SignedByRecipient,
    check_stamp,
    check_statement,
)

NOW = 1_760_000_000_000
MID = "01a22465-187a-7f35-b4cc-50ea0e0b5e98"
OTHER_MID = "01a22465-187a-7f35-b4cc-50ea0e0b5e99"
DIGEST = bytes(range(32))
SENDER = "ru-mvd-dushanbe"
RECIPIENT = "tj-mvd-moscow"
THIRD = "tj-labour-moscow"
GATEWAY = "gw-dushanbe"

STAMP = Receipt(MID, ReceiptState.STAMPED, GATEWAY, NOW, DIGEST, SENDER, log_index=7)


def _receipt(state: ReceiptState, signer: str, recipient: str = "") -> Receipt:
    return Receipt(MID, state, signer, NOW, DIGEST, SENDER, recipient=recipient)


def _rejection(signer: str) -> Rejection:
    return Rejection(MID, Reason.POLICY_DENIED, "denied", signer, NOW, DIGEST, SENDER)


# --- check_stamp ---------------------------------------------------------------------------


def test_the_gateway_stamp_on_this_envelope_passes(directory: Directory) -> None:
    assert check_stamp(STAMP, message_id=MID, header_digest=DIGEST, directory=directory) is None


@pytest.mark.parametrize(
    ("stamp", "match"),
    [
        pytest.param(_rejection(GATEWAY), "rejection", id="a-rejection"),
        pytest.param(dataclasses.replace(STAMP, state=ReceiptState.DELIVERED), "DELIVERED", id="not-stamped"),
        pytest.param(dataclasses.replace(STAMP, state=ReceiptState.ACCEPTED), "ACCEPTED", id="accepted-only"),
        pytest.param(dataclasses.replace(STAMP, signer=SENDER), "not a gateway", id="signed-by-an-office"),
        pytest.param(dataclasses.replace(STAMP, message_id=OTHER_MID), "another message", id="other-message"),
        pytest.param(
            dataclasses.replace(STAMP, header_digest=bytes(32)), "another header", id="other-header"
        ),
    ],
)
def test_check_stamp_refuses(directory: Directory, stamp: Statement, match: str) -> None:
    with pytest.raises(errors.SignatureError, match=match):
        check_stamp(stamp, message_id=MID, header_digest=DIGEST, directory=directory)


# --- check_statement -----------------------------------------------------------------------

SENT_TO = (RECIPIENT,)
SENT = SentMessage(SENT_TO, DIGEST, NOW - 1_000)


@pytest.mark.parametrize(
    ("statement", "sent"),
    [
        pytest.param(_rejection(GATEWAY), SENT, id="rejection-by-gateway"),
        pytest.param(_rejection(GATEWAY), None, id="rejection-of-unknown-message"),
        pytest.param(_receipt(ReceiptState.ACCEPTED, SENDER), SENT, id="accepted-by-sender"),
        pytest.param(_receipt(ReceiptState.STAMPED, GATEWAY), SENT, id="stamped-by-gateway"),
        pytest.param(
            _receipt(ReceiptState.DELIVERED, RECIPIENT, RECIPIENT), SENT, id="delivered-by-recipient"
        ),
        pytest.param(_receipt(ReceiptState.READ, RECIPIENT, RECIPIENT), SENT, id="read-by-recipient"),
    ],
)
def test_check_statement_allows(directory: Directory, statement: Statement, sent: SentMessage | None) -> None:
    assert check_statement(statement, office=SENDER, sent=sent, directory=directory) is None


@pytest.mark.parametrize(
    ("statement", "sent", "error", "match"),
    [
        pytest.param(
            _rejection(RECIPIENT), SENT, errors.SignatureError, "rejection of", id="rejection-by-an-office"
        ),
        pytest.param(
            _rejection(RECIPIENT), None, errors.SignatureError, "rejection of", id="forged-rejection-unknown"
        ),
        pytest.param(
            _receipt(ReceiptState.DELIVERED, RECIPIENT, RECIPIENT),
            None,
            errors.NotFoundError,
            "did not send",
            id="receipt-for-a-message-not-sent",
        ),
        pytest.param(
            _receipt(ReceiptState.STAMPED, RECIPIENT),
            SENT,
            errors.SignatureError,
            "STAMPED receipt for",
            id="stamped-by-an-office",
        ),
        pytest.param(
            _receipt(ReceiptState.DELIVERED, THIRD, THIRD),
            SENT,
            errors.SignatureError,
            "non-recipient",
            id="delivered-by-a-third-office",
        ),
        pytest.param(
            _receipt(ReceiptState.READ, RECIPIENT, THIRD),
            SENT,
            errors.SignatureError,
            "non-recipient",
            id="read-on-another-recipients-behalf",
        ),
        # Bound to what this office sent (issue 11, section 5): sender, header, time.
        pytest.param(
            dataclasses.replace(_rejection(GATEWAY), sender=RECIPIENT),
            SENT,
            errors.SignatureError,
            "names sender",
            id="rejection-of-another-offices-submission",
        ),
        pytest.param(
            dataclasses.replace(_rejection(GATEWAY), sender=RECIPIENT),
            None,
            errors.SignatureError,
            "names sender",
            id="rejection-of-another-offices-unknown-message",
        ),
        pytest.param(
            dataclasses.replace(_rejection(GATEWAY), header_digest=bytes(32)),
            SENT,
            errors.SignatureError,
            "another header digest",
            id="rejection-of-another-header",
        ),
        pytest.param(
            dataclasses.replace(_receipt(ReceiptState.STAMPED, GATEWAY), sender=THIRD),
            SENT,
            errors.SignatureError,
            "names sender",
            id="stamp-of-another-offices-message",
        ),
        pytest.param(
            dataclasses.replace(
                _receipt(ReceiptState.DELIVERED, RECIPIENT, RECIPIENT), header_digest=bytes(32)
            ),
            SENT,
            errors.SignatureError,
            "another header digest",
            id="delivered-for-another-header",
        ),
        pytest.param(
            dataclasses.replace(_receipt(ReceiptState.READ, RECIPIENT, RECIPIENT), at_ms=NOW - 3_600_000),
            SENT,
            errors.ClockSkewError,
            "before the message was created",
            id="read-dated-before-the-message",
        ),
        pytest.param(
            _receipt(ReceiptState.DELIVERED, GATEWAY, GATEWAY),
            SENT,
            errors.SignatureError,
            "non-recipient",
            id="delivered-by-the-gateway",
        ),
    ],
)
def test_check_statement_refuses(
    directory: Directory,
    statement: Statement,
    sent: SentMessage | None,
    error: type[errors.LiaisonError],
    match: str,
) -> None:
    with pytest.raises(error, match=match):
        check_statement(statement, office=SENDER, sent=sent, directory=directory)


# --- the policies --------------------------------------------------------------------------


def test_all_of_checks_every_policy_in_order(directory: Directory) -> None:
    delivered = _receipt(ReceiptState.DELIVERED, RECIPIENT, RECIPIENT)
    AllOf([SignedByRecipient(SENT_TO)]).verify(delivered)
    AllOf([]).verify(delivered)
    with pytest.raises(errors.SignatureError, match="not signed by a gateway"):
        AllOf([SignedByRecipient(SENT_TO), SignedByGateway(directory, "receipt for")]).verify(delivered)
