"""The recipient's and sender's statement rules (``exchange.core.receipts``), as tables.

The statements here are built directly (their signatures are ``verify_statement``'s
business, tested in test_seal.py); each case changes one thing from a valid one.
The log proofs are real: a ten-record log whose leaf 7 is this message's
ACCEPTED record, and a tree head signed with the test gateway's Ed25519 key.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from exchange.core import errors, primitives
from exchange.core.codec.envelope import decode_logged_claim
from exchange.core.envelope import Receipt, Rejection, Statement
from exchange.core.logproof import ForkError, LogHead, LogProof, check_link
from exchange.core.merkle import AuditError, InclusionProofError
from exchange.core.model import Algorithm, Directory, Gateway, Reason, ReceiptState
from exchange.core.receipts import (
    AllOf,
    ProvesInclusion,
    SentMessage,
    SignedByGateway,
    SignedByRecipient,
    check_stamp,
    check_statement,
)
from gateway.audit.codec import encode_record, encode_tree_head
from gateway.audit.record import AuditRecord, Verdict
from gateway.audit.tree import MemoryTree, consistency_proof, inclusion_proof
from gateway.audit.treehead import TreeHead, sign_tree_head

NOW = 1_760_000_000_000
MID = "01a22465-187a-7f35-b4cc-50ea0e0b5e98"
OTHER_MID = "01a22465-187a-7f35-b4cc-50ea0e0b5e99"
DIGEST = bytes(range(32))
SENDER = "ru-mvd-dushanbe"
RECIPIENT = "tj-mvd-moscow"
THIRD = "tj-labour-moscow"
GATEWAY = "gw-dushanbe"

STAMP = Receipt(MID, ReceiptState.STAMPED, GATEWAY, NOW, DIGEST, SENDER, log_index=7)


def _record(i: int, message_id: str = MID, verdict: Verdict = Verdict.ACCEPTED) -> bytes:
    if i != 7:  # other messages' records
        message_id = f"01a22465-187a-7f35-b4cc-50ea0e0b5e{i:02d}"
    reason = Reason.POLICY_DENIED if verdict is Verdict.REJECTED else None
    return encode_record(
        AuditRecord(NOW, verdict, SENDER, message_id, (RECIPIENT,), header_digest=DIGEST, reason=reason)
    )


def _head(
    records: list[bytes], keys: tuple[primitives.PrivateKey, ...], gateway: str = GATEWAY
) -> tuple[MemoryTree, LogHead]:
    tree = MemoryTree()
    tree.append_entries(records)
    head = TreeHead(size=tree.size, root=tree.root(), timestamp_ms=NOW, gateway=gateway)
    head_bytes = encode_tree_head(head)
    ed25519 = tuple(k for k in keys if k.algorithm is Algorithm.ED25519)
    signatures = sign_tree_head(head, head_bytes, ed25519)
    return tree, LogHead(head.size, head.root, NOW, gateway, head_bytes, signatures)


def _proof(keys: tuple[primitives.PrivateKey, ...], size: int = 10, index: int = 7) -> LogProof:
    records = [_record(i) for i in range(size)]
    tree, head = _head(records, keys)
    return LogProof(
        records[index],
        decode_logged_claim(records[index]),
        index,
        head,
        tuple(inclusion_proof(index, size, tree)),
    )


@pytest.fixture(scope="module")
def proof(gateway: tuple[Gateway, tuple[primitives.PrivateKey, ...]]) -> LogProof:
    return _proof(gateway[1])


def _receipt(state: ReceiptState, signer: str, recipient: str = "") -> Receipt:
    return Receipt(MID, state, signer, NOW, DIGEST, SENDER, recipient=recipient)


def _rejection(signer: str) -> Rejection:
    return Rejection(MID, Reason.POLICY_DENIED, "denied", signer, NOW, DIGEST, SENDER)


# --- check_stamp ---------------------------------------------------------------------------


def test_the_gateway_stamp_on_this_envelope_passes(directory: Directory, proof: LogProof) -> None:
    assert check_stamp(STAMP, message_id=MID, header_digest=DIGEST, directory=directory, proof=proof) is None


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
def test_check_stamp_refuses(directory: Directory, proof: LogProof, stamp: Statement, match: str) -> None:
    with pytest.raises(errors.SignatureError, match=match):
        check_stamp(stamp, message_id=MID, header_digest=DIGEST, directory=directory, proof=proof)


def _other_record(p: LogProof, record: bytes) -> LogProof:
    return dataclasses.replace(p, record=record, claim=decode_logged_claim(record))


def _forged_head(p: LogProof) -> LogProof:
    """A head over a log with leaf 7 in it that the gateway never signed (signature of another key)."""
    other = primitives.generate(Algorithm.ED25519)
    head = dataclasses.replace(p.head, signatures=sign_tree_head(None, p.head.head_bytes, (other,)))  # type: ignore[arg-type]
    return dataclasses.replace(p, head=head)


def _resigned(p: LogProof, keys: tuple[primitives.PrivateKey, ...], size: int) -> LogProof:
    """The real gateway's key, a head of a log in which leaf 7 is not this record."""
    records = [_record(i) for i in range(size)]
    records[7] = _record(8)
    tree, head = _head(records, keys)
    return dataclasses.replace(p, head=head, inclusion=tuple(inclusion_proof(7, size, tree)))


PROOF_ATTACKS: list[
    tuple[str, Callable[[LogProof, tuple[primitives.PrivateKey, ...]], LogProof | None], str]
] = [
    ("no-proof", lambda p, k: None, "carries no proof"),
    ("index-not-in-the-log", lambda p, k: _proof(k, size=7, index=6), "proof of leaf 6"),
    (
        "index-beyond-the-head",
        lambda p, k: dataclasses.replace(p, head=_proof(k, size=7, index=6).head),
        "not below",
    ),
    ("other-leaf-claimed", lambda p, k: dataclasses.replace(p, leaf_index=6), "proof of leaf 6"),
    ("another-messages-record", lambda p, k: _other_record(p, _record(8)), "not its acceptance"),
    (
        "a-rejection-record",
        lambda p, k: _other_record(p, _record(7, verdict=Verdict.REJECTED)),
        "not its acceptance",
    ),
    (
        "record-of-another-header",
        lambda p, k: _other_record(
            p,
            encode_record(
                AuditRecord(NOW, Verdict.ACCEPTED, SENDER, MID, (RECIPIENT,), header_digest=bytes(32))
            ),
        ),
        "another header",
    ),
    ("head-of-another-log", lambda p, k: _resigned(p, k, 10), "does not lead to the root"),
    ("truncated-inclusion", lambda p, k: dataclasses.replace(p, inclusion=p.inclusion[:-1]), "too short"),
    (
        "padded-inclusion",
        lambda p, k: dataclasses.replace(p, inclusion=(*p.inclusion, bytes(32))),
        "too long",
    ),
    ("head-not-signed-by-gateway", lambda p, k: _forged_head(p), "unknown key"),
    (
        "head-unsigned",
        lambda p, k: dataclasses.replace(p, head=dataclasses.replace(p.head, signatures=())),
        "no Ed25519",
    ),
    (
        "head-of-another-gateway",
        lambda p, k: dataclasses.replace(p, head=dataclasses.replace(p.head, gateway="gw-moscow")),
        "tree head of gw-moscow",
    ),
]


@pytest.mark.parametrize(("attack", "match"), [pytest.param(a, m, id=i) for i, a, m in PROOF_ATTACKS])
def test_check_stamp_refuses_a_stamp_not_proven_in_the_log(
    directory: Directory,
    gateway: tuple[Gateway, tuple[primitives.PrivateKey, ...]],
    proof: LogProof,
    attack: Callable[[LogProof, tuple[primitives.PrivateKey, ...]], LogProof | None],
    match: str,
) -> None:
    bad = attack(proof, gateway[1])
    with pytest.raises((AuditError, errors.SignatureError), match=match):
        check_stamp(STAMP, message_id=MID, header_digest=DIGEST, directory=directory, proof=bad)


def test_the_sender_checks_the_proof_of_its_stamped_receipt(directory: Directory, proof: LogProof) -> None:
    assert check_statement(STAMP, office=SENDER, sent=SENT, directory=directory, proof=proof) is None
    with pytest.raises(InclusionProofError, match="carries no log proof"):
        check_statement(STAMP, office=SENDER, sent=SENT, directory=directory)
    with pytest.raises(InclusionProofError, match="proof of leaf 7, stamp names 6"):
        ProvesInclusion(proof, directory).verify(dataclasses.replace(STAMP, log_index=6))


# --- check_link: the heads one office was shown --------------------------------------------


def test_check_link_accepts_heads_of_one_growing_log(
    gateway: tuple[Gateway, tuple[primitives.PrivateKey, ...]],
) -> None:
    records = [_record(i) for i in range(10)]
    _, head6 = _head(records[:6], gateway[1])
    tree10, head10 = _head(records, gateway[1])
    link = tuple(consistency_proof(6, 10, tree10))
    assert check_link(head6, head10, link) is None
    assert check_link(head10, head6, link) is None  # either order: the smaller is the older
    assert check_link(head10, head10, ()) is None


@pytest.mark.parametrize(
    ("fork", "match"),
    [
        pytest.param(
            "same-size-other-root", "same size|size 10 with different roots", id="same-size-other-root"
        ),
        pytest.param("rewritten-history", "not consistent", id="rewritten-history"),
        pytest.param("no-link-given", "not consistent", id="no-link-given"),
        pytest.param("other-gateway", "two gateways", id="other-gateway"),
    ],
)
def test_check_link_raises_on_a_fork(
    gateway: tuple[Gateway, tuple[primitives.PrivateKey, ...]], fork: str, match: str
) -> None:
    records = [_record(i) for i in range(10)]
    forked = [*records[:3], _record(8), *records[4:]]  # record 3 rewritten
    _, head6 = _head(records[:6], gateway[1])
    _, head10 = _head(records, gateway[1])
    ftree10, fhead10 = _head(forked, gateway[1])
    known, new, link = {
        "same-size-other-root": (head10, fhead10, ()),
        "rewritten-history": (head6, fhead10, tuple(consistency_proof(6, 10, ftree10))),
        "no-link-given": (head6, head10, ()),
        "other-gateway": (head6, dataclasses.replace(head10, gateway="gw-moscow"), ()),
    }[fork]
    with pytest.raises(ForkError, match=match):
        check_link(known, new, link)


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
def test_check_statement_allows(
    directory: Directory, proof: LogProof, statement: Statement, sent: SentMessage | None
) -> None:
    if isinstance(statement, Receipt) and statement.state is ReceiptState.STAMPED:
        statement = STAMP  # the one the proof is about
    assert check_statement(statement, office=SENDER, sent=sent, directory=directory, proof=proof) is None


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
