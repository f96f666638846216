"""End to end through real processes: office nodes, the gateway and nats-server.

One lab per test module (real nats-server, gateway and three office node
processes, real gRPC); tests use their own message and case ids so they do
not disturb each other.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from exchange.client.sdk import Client
from exchange.core.api import Delivery, SendRequest
from exchange.core.errors import RemoteError
from exchange.core.ids import new_message_id
from exchange.core.model import (
    Alert,
    AlertCategory,
    CaseMessage,
    ConsularRequest,
    ConsularRequestType,
    Identifier,
    Person,
    Priority,
    ReceiptState,
)
from gateway.audit.record import Verdict
from gateway.client import AuditClient, AuditFilter
from liaison.lab.lab import Lab
from tests.integration.labutil import INVENTORY, directory, inject, sealed, wait_for, with_limits

RU, TJ, MIG = "ru-mvd-dushanbe", "tj-mvd-moscow", "tj-migration-moscow"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    lab = Lab(tmp_path_factory.mktemp("lab"), inventory=INVENTORY)
    with lab:
        yield lab


@pytest.fixture(scope="module")
def clients(lab: Lab) -> Iterator[dict[str, Client]]:
    opened = {office: Client.from_lab(lab.root, office) for office in (RU, TJ, MIG)}
    yield opened
    for c in opened.values():
        c.close()


@pytest.fixture(scope="module")
def audit(lab: Lab) -> Iterator[AuditClient]:
    with AuditClient.from_lab(lab.root) as client:
        yield client


def receive(
    client: Client, wanted: set[str], *, ack: bool = True, wait_s: float = 20.0
) -> dict[str, Delivery]:
    """Deliveries of the ``wanted`` message ids (others are left alone)."""
    got: dict[str, Delivery] = {}
    deadline = time.monotonic() + wait_s
    while set(got) != wanted and time.monotonic() < deadline:
        for d in client.subscribe(wait_s=1.0):
            if d.message_id in wanted:
                assert d.message_id not in got, f"{d.message_id} delivered twice"
                got[d.message_id] = d
                if ack:
                    client.ack(d.message_id)
            if set(got) == wanted:
                break
    assert set(got) == wanted, f"missing deliveries: {wanted - set(got)}"
    return got


CITIZEN = Person("Dilshod N.", "1985-09-30", "TJ", (Identifier("passport", "400765432", "TJ"),))
BODIES = {
    "alert": Alert(
        AlertCategory.MISSING_PERSON, Priority.IMMEDIATE, "Missing minor", "Last seen at the station"
    ),
    "case-message": CaseMessage(case_id="CASE-E2E-1", text="Please confirm the address", thread="addresses"),
    "consular-request": ConsularRequest(
        CITIZEN, ConsularRequestType.RIGHTS_PROTECTION, "Detained without counsel"
    ),
}


@pytest.mark.parametrize("kind", list(BODIES))
def test_each_body_type_reaches_read(kind: str, clients: dict[str, Client], audit: AuditClient) -> None:
    body = BODIES[kind]
    sender, recipient = (MIG, RU) if kind == "consular-request" else (RU, TJ)
    case_id = body.case_id if isinstance(body, CaseMessage) else ""
    sent = clients[sender].send(SendRequest(body, (recipient,), case_id=case_id))
    got = receive(clients[recipient], {sent.message_id})[sent.message_id]
    assert got.body == body
    assert got.sender == sender
    assert got.kind.label == kind
    wait_for(
        lambda: clients[sender].status(sent.message_id).recipients[0].state is ReceiptState.READ, what="READ"
    )
    states = [s.statement.state for s in clients[sender].status(sent.message_id).statements]  # type: ignore[union-attr]
    assert set(states) == {
        ReceiptState.ACCEPTED,
        ReceiptState.STAMPED,
        ReceiptState.DELIVERED,
        ReceiptState.READ,
    }
    records, _ = audit.query(AuditFilter(message_id=sent.message_id), oldest_first=True)
    assert [r.record.verdict for r in records] == [Verdict.ACCEPTED, Verdict.RECEIPT, Verdict.RECEIPT]
    assert [r.record.receipt_state for r in records[1:]] == [ReceiptState.DELIVERED, ReceiptState.READ]


def test_multi_recipient_alert(clients: dict[str, Client]) -> None:
    sent = clients[RU].send_alert(
        [TJ, MIG], category=AlertCategory.DRUG_TRAFFICKING, priority=Priority.FLASH, subject="s", text="t"
    )
    for office in (TJ, MIG):
        assert receive(clients[office], {sent.message_id})[sent.message_id].priority is Priority.FLASH
    wait_for(
        lambda: all(r.state is ReceiptState.READ for r in clients[RU].status(sent.message_id).recipients),
        what="READ from both recipients",
    )
    assert {r.recipient for r in clients[RU].status(sent.message_id).recipients} == {TJ, MIG}


def test_subscribe_resumes_without_loss_or_duplicates(clients: dict[str, Client]) -> None:
    ids = [
        clients[TJ].send_case_message([MIG], case_id="CASE-RESUME", text=f"part {i}").message_id
        for i in range(6)
    ]
    first: list[Delivery] = []
    for d in clients[MIG].subscribe(wait_s=10.0):
        if d.message_id in ids:
            first.append(d)
        if len(first) == 2:
            break  # the agency system disconnects after two
    cursor = first[-1].cursor
    rest = [d for d in clients[MIG].subscribe(cursor, wait_s=3.0) if d.message_id in ids]
    seen = [d.message_id for d in first + rest]
    assert sorted(seen) == sorted(ids)
    assert len(seen) == len(set(seen))
    assert [d.cursor for d in first + rest] == sorted(d.cursor for d in first + rest)
    for message_id in ids:
        clients[MIG].ack(message_id)


def test_case_thread_and_offices(clients: dict[str, Client]) -> None:
    first = clients[RU].send_case_message([TJ], case_id="CASE-THREAD", text="question")
    receive(clients[TJ], {first.message_id})
    reply = clients[TJ].send_case_message(
        [RU], case_id="CASE-THREAD", text="answer", in_reply_to=first.message_id
    )
    receive(clients[RU], {reply.message_id})
    thread = clients[RU].case("CASE-THREAD")
    assert [(e.message_id, e.outgoing) for e in thread] == [
        (first.message_id, True),
        (reply.message_id, False),
    ]
    listing = clients[MIG].offices()
    assert listing.self_id == MIG
    may = {o.id: {k.label for k in o.may_send} for o in listing.offices}
    assert may[RU] == {"case-message", "consular-request"}


def _rejected(client: Client, message_id: str) -> str:
    wait_for(lambda: _has_status(client, message_id), what=f"rejection of {message_id}")
    status = client.status(message_id)
    assert status.rejected
    reason = status.recipients[0].rejection
    assert reason is not None
    return reason.label


def _has_status(client: Client, message_id: str) -> bool:
    try:
        return client.status(message_id).rejected
    except RemoteError:
        return False


def test_policy_rejection_is_signed_and_audited(clients: dict[str, Client], audit: AuditClient) -> None:
    sent = clients[MIG].send_alert(
        [RU], category=AlertCategory.OTHER, priority=Priority.ROUTINE, subject="x", text="y"
    )
    assert _rejected(clients[MIG], sent.message_id) == "policy-denied"
    records, _ = audit.query(AuditFilter(message_id=sent.message_id))
    assert [(r.record.verdict, r.record.reason and r.record.reason.label) for r in records] == [
        (Verdict.REJECTED, "policy-denied")
    ]


def _flip_signature(lab: Lab) -> tuple[object, str]:
    env = sealed(lab, TJ, [RU])
    sig = env.signatures[0]
    bad = type(sig)(sig.key_id, sig.algorithm, bytes([sig.value[0] ^ 1]) + sig.value[1:])
    return type(env)(env.header, env.header_bytes, (bad,), env.ciphertext), "bad-signature"


def _unknown_recipient(lab: Lab) -> tuple[object, str]:
    # Sealed against a directory view that still lists an office the gateway no longer knows.
    d = directory(lab)
    ghost = replace(d.office(MIG), id="tj-closed-office")  # type: ignore[type-var]
    return sealed(lab, TJ, [RU, "tj-closed-office"], in_directory=replace(d, offices=(*d.offices, ghost))), (
        "unknown-recipient"
    )


def _expired(lab: Lab) -> tuple[object, str]:
    envelope = sealed(lab, TJ, [RU], ttl_s=1)
    time.sleep(1.2)  # on the wire past its expiry
    return envelope, "expired"


def _future(lab: Lab) -> tuple[object, str]:
    return sealed(lab, TJ, [RU], now_ms=int(time.time() * 1000) + 3_600_000), "clock-skew"


def _oversize(lab: Lab) -> tuple[object, str]:
    generous = with_limits(directory(lab), max_body_bytes=200_000, max_envelope_bytes=300_000)
    return sealed(lab, TJ, [RU], text="x" * 100_000, in_directory=generous), "oversize"


@pytest.mark.parametrize(
    "make", [_flip_signature, _unknown_recipient, _expired, _future, _oversize], ids=lambda f: f.__name__[1:]
)
def test_gateway_refusals_reach_status_and_audit(
    make, lab: Lab, clients: dict[str, Client], audit: AuditClient
) -> None:  # type: ignore[no-untyped-def]
    envelope, reason = make(lab)
    message_id = envelope.header.context.message_id
    inject(lab, TJ, envelope, message_id)
    assert _rejected(clients[TJ], message_id) == reason
    records, _ = audit.query(AuditFilter(message_id=message_id))
    assert len(records) == 1
    assert records[0].record.verdict is Verdict.REJECTED
    assert records[0].record.reason is not None
    assert records[0].record.reason.label == reason


def test_sender_mismatch_is_refused(lab: Lab, clients: dict[str, Client], audit: AuditClient) -> None:
    """An office posting another office's (validly signed) envelope on its own subject."""
    envelope = sealed(lab, RU, [TJ])
    message_id = envelope.header.context.message_id
    inject(lab, MIG, envelope, message_id)
    assert _rejected(clients[MIG], message_id) == "sender-mismatch"
    with pytest.raises(RemoteError):
        clients[TJ].ack(message_id)  # never delivered


def test_replay_after_the_duplicate_window_is_refused(
    lab: Lab, clients: dict[str, Client], audit: AuditClient
) -> None:
    """The same envelope published again under a new NATS message id: JetStream's
    dedup cannot see it (as after its duplicate window); the gateway's log does."""
    envelope = sealed(lab, TJ, [RU])
    message_id = envelope.header.context.message_id
    inject(lab, TJ, envelope, message_id)
    receive(clients[RU], {message_id})
    inject(lab, TJ, envelope, f"{message_id}-again-{new_message_id(int(time.time() * 1000))}")
    wait_for(lambda: len(audit.query(AuditFilter(message_id=message_id))[0]) >= 4, what="replay audited")
    verdicts = sorted(r.record.verdict.label for r in audit.query(AuditFilter(message_id=message_id))[0])
    assert verdicts == ["accepted", "receipt", "receipt", "rejected"]
    rejected = [
        r for r in audit.query(AuditFilter(message_id=message_id))[0] if r.record.verdict is Verdict.REJECTED
    ]
    assert rejected[0].record.reason is not None
    assert rejected[0].record.reason.label == "replay"
    # The recipient still holds it exactly once.
    assert [d.message_id for d in clients[RU].subscribe(include_read=True, wait_s=1.0)].count(message_id) == 1


def test_malformed_frame_is_audited(lab: Lab, audit: AuditClient) -> None:
    def malformed_from_tj() -> list[object]:
        records, _ = audit.query(AuditFilter(verdict=Verdict.REJECTED, sender=TJ), page_size=100)
        return [r for r in records if r.record.reason and r.record.reason.label == "malformed"]

    before = len(malformed_from_tj())
    inject(lab, TJ, b"\x0a\xff\xff not a frame", "garbage-1")
    wait_for(lambda: len(malformed_from_tj()) == before + 1, what="the malformed frame's audit record")


@pytest.mark.parametrize(
    ("call", "status"),
    [
        (lambda c: c.send_case_message(["no-such-office"], case_id="C", text="t"), "INVALID_ARGUMENT"),
        (lambda c: c.send_case_message([TJ], case_id="C", text="x" * 40_000), "RESOURCE_EXHAUSTED"),
        (lambda c: c.status("not-a-uuid"), "INVALID_ARGUMENT"),
        (lambda c: c.status("01a22465-187a-7f35-b4cc-50ea0e0b5e98"), "NOT_FOUND"),
        (lambda c: c.ack("01a22465-187a-7f35-b4cc-50ea0e0b5e98"), "NOT_FOUND"),
        (lambda c: c.case("no-such-case"), "NOT_FOUND"),
    ],
    ids=[
        "unknown-recipient",
        "oversize-body",
        "malformed-id",
        "unknown-status",
        "unknown-ack",
        "unknown-case",
    ],
)
def test_bad_requests_get_precise_status(call, status: str, clients: dict[str, Client]) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(RemoteError) as info:
        call(clients[RU])
    assert info.value.status == status
    assert "Traceback" not in info.value.detail


def test_lab_json_describes_the_deployment(lab: Lab) -> None:
    doc = json.loads((lab.root / "lab.json").read_text())
    assert {o["id"] for o in doc["offices"]} == {RU, TJ, MIG}
    assert doc["gateway"]["grpc"]
    assert doc["nats_url"].startswith("tls://127.0.0.1:")
    assert Path(doc["directory"]).exists()
    for office in doc["offices"]:
        assert Path(office["nats"]["cert"]).exists()
        assert Path(office["client_tls"]["cert"]).exists()
    assert Path(doc["client_tls"]["ca"]).exists()
    assert Path(doc["operator_tls"]["key"]).exists()
