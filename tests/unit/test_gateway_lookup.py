"""The gateway's audit-log lookups by message id: the right record among many, across pages.

``GatewayNode._prior`` (replay/resume) and ``_receipt_audited`` read every entry of one
message id (the message-id index) and pick the verdict in Python; these tests pin that the
answer is the same as a filter on the verdict would give, also past one page of entries.
"""

from __future__ import annotations

from exchange.core.model import Reason, ReceiptState
from gateway.audit.codec import encode_record
from gateway.audit.record import AuditRecord, Verdict
from gateway.audit.sqlite import SQLiteAuditStore
from gateway.node import LOOKUP_PAGE, GatewayNode

NOW = 1_760_000_000_000
SENDER = "ru-mvd-dushanbe"
RECIPIENT = "tj-mvd-moscow"


def _append(store: SQLiteAuditStore, *records: AuditRecord) -> list[int]:
    return store.append([(encode_record(r), r.index_columns()) for r in records])


def _accepted(message_id: str, seq: int) -> AuditRecord:
    return AuditRecord(
        NOW, Verdict.ACCEPTED, SENDER, message_id, (RECIPIENT,), header_digest=b"d" * 32, source_seq=seq
    )


def _refused(message_id: str) -> AuditRecord:
    return AuditRecord(NOW, Verdict.REJECTED, SENDER, message_id, reason=Reason.REPLAY)


def _receipt(message_id: str, state: ReceiptState, signer: str) -> AuditRecord:
    return AuditRecord(NOW, Verdict.RECEIPT, signer, message_id, receipt_state=state, receipt_signer=signer)


def test_prior_is_the_accepted_record_of_that_id(node: GatewayNode, store: SQLiteAuditStore) -> None:
    _append(store, *(_accepted(f"other-{i}", i) for i in range(20)))
    [index] = _append(store, _accepted("m-1", 99))
    _append(store, _refused("m-1"), _receipt("m-1", ReceiptState.DELIVERED, RECIPIENT))
    prior = node._prior("m-1")
    assert prior is not None
    assert (prior.log_index, prior.sender, prior.recipients, prior.source_seq) == (
        index,
        SENDER,
        (RECIPIENT,),
        99,
    )
    assert node._prior("m-unknown") is None


def test_lookups_read_past_the_first_page(node: GatewayNode, store: SQLiteAuditStore) -> None:
    # More refusals of one id than fit in a page, then its acceptance and a receipt.
    _append(store, *(_refused("m-2") for _ in range(LOOKUP_PAGE + 5)))
    [index] = _append(store, _accepted("m-2", 7))
    prior = node._prior("m-2")
    assert prior is not None
    assert prior.log_index == index
    assert not node._receipt_audited("m-2", int(ReceiptState.DELIVERED), RECIPIENT)
    _append(store, _receipt("m-2", ReceiptState.DELIVERED, RECIPIENT))
    assert node._receipt_audited("m-2", int(ReceiptState.DELIVERED), RECIPIENT)
    assert not node._receipt_audited("m-2", int(ReceiptState.READ), RECIPIENT)
    assert not node._receipt_audited("m-2", int(ReceiptState.DELIVERED), SENDER)
