"""Store-and-forward through outages: an office down, the gateway SIGKILLed, a backlog with priorities.

Each test runs its own lab of real processes and ends with the message
counters (sent, accepted, delivered, audited) equal, printed for the record.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from exchange.client.sdk import Client
from exchange.core.directory import SignedDirectory
from exchange.core.model import AlertCategory, Priority, ReceiptState
from exchange.core.wire import IN_STREAM, OUT_STREAM
from exchange.nats.transport import Transport
from gateway.audit.record import Verdict
from gateway.audit.verify import verify_log
from gateway.client import AuditClient, AuditFilter
from liaison.lab.lab import Lab
from tests.faults.faultutil import on_nats
from tests.integration.labutil import INVENTORY, wait_for

RU, TJ = "ru-mvd-dushanbe", "tj-mvd-moscow"


@pytest.fixture
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    lab = Lab(tmp_path_factory.mktemp("lab"), inventory=INVENTORY)
    with lab:
        yield lab


def _collect(lab: Lab, office: str, wanted: set[str], timeout: float = 60.0) -> list[str]:
    """Message ids as the office's agency system receives them (each acknowledged)."""
    order: list[str] = []
    deadline = time.monotonic() + timeout
    with Client.from_lab(lab.root, office) as client:
        while set(order) < wanted and time.monotonic() < deadline:
            for d in client.subscribe(wait_s=1.0):
                order.append(d.message_id)
                client.ack(d.message_id)
    return order


def _audited(lab: Lab, ids: list[str]) -> int:
    with AuditClient.from_lab(lab.root) as audit:
        return sum(
            1
            for message_id in ids
            for r in audit.query(AuditFilter(message_id=message_id))[0]
            if r.record.verdict is Verdict.ACCEPTED
        )


def _report(name: str, sent: int, accepted: int, delivered: int, audited: int) -> None:
    print(f"\n[{name}] sent={sent} accepted={accepted} delivered={delivered} audited={audited}")


def test_offline_recipient_receives_everything_in_order(lab: Lab) -> None:
    lab.nodes[TJ].stop()
    with Client.from_lab(lab.root, RU) as ru:
        ids = [
            ru.send_case_message([TJ], case_id="OUTAGE", text=f"message {i}").message_id for i in range(12)
        ]
        wait_for(
            lambda: all(ru.status(m).recipients[0].state is ReceiptState.STAMPED for m in ids),
            what="the gateway to stamp every message while the recipient is down",
        )
    lab.start_node(TJ)
    order = _collect(lab, TJ, set(ids))
    assert order == ids, "all delivered, once each, in the sender's order"
    _report("offline recipient", len(ids), len(ids), len(order), _audited(lab, ids))
    assert _audited(lab, ids) == len(ids)


def test_gateway_sigkill_mid_stream_loses_and_duplicates_nothing(lab: Lab) -> None:
    ids: list[str] = []
    done = threading.Event()

    def send() -> None:
        with Client.from_lab(lab.root, RU) as ru:
            for i in range(40):
                ids.append(ru.send_case_message([TJ], case_id="KILL", text=f"message {i}").message_id)
                time.sleep(0.02)
        done.set()

    sender = threading.Thread(target=send)
    sender.start()
    wait_for(lambda: len(ids) >= 10, what="traffic to flow")
    lab.gateway.stop(kill=True)  # SIGKILL mid-stream
    time.sleep(1.0)
    lab.start_node("gateway")
    sender.join(timeout=60)
    assert done.is_set()
    order = _collect(lab, TJ, set(ids))
    assert sorted(order) == sorted(ids)
    assert len(order) == len(set(order)), "no message reaches the agency system twice"
    audited = _audited(lab, ids)
    _report("gateway SIGKILL", len(ids), len(ids), len(order), audited)
    assert audited == len(ids), "every message audited exactly once"
    with AuditClient.from_lab(lab.root) as audit:
        head = audit.tree_head()
        entries = [(r.index, r.entry) for r in audit.all_records()]
    assert lab.deployment is not None
    directory = SignedDirectory.from_bytes(lab.deployment.directory_file.read_bytes()).directory
    verify_log(entries[: head.tree_head.size], [head], directory)


def test_frames_redelivered_as_first_deliveries_are_resumed_not_refused(lab: Lab) -> None:
    """A nats-server restarted after a crash may redeliver with a delivery count of 1.

    The consumer's delivery state is not synced like the stream is, so a frame the
    gateway audited but had not acknowledged can come back looking like a first
    delivery. The gateway must tell it from a replay by its out-stream sequence.
    Here routing is made to fail (the inbox stream is moved off its subjects), so
    the frames are audited and left unacknowledged; the gateway is SIGKILLed and its
    consumer recreated, so every frame comes back with a count of 1. Before this was
    fixed, each was refused as a replay, its sender got a rejection and it was never
    routed.
    """
    durable = f"gateway-{RU}"

    async def move_inbox_stream(t: Transport, subjects: list[str]) -> list[str]:
        config = (await t.js.stream_info(IN_STREAM)).config
        before, config.subjects = list(config.subjects or []), subjects
        await t.js.update_stream(config)
        return before

    inbox_subjects = on_nats(lab, lambda t: move_inbox_stream(t, ["liaison.v1.test-parked.>"]))
    with Client.from_lab(lab.root, RU) as ru:
        ids = [ru.send_case_message([TJ], case_id="REDO", text=f"message {i}").message_id for i in range(8)]

    def audited() -> int:
        with AuditClient.from_lab(lab.root) as audit:
            records = [r for i in ids for r in audit.query(AuditFilter(message_id=i))[0]]
        return sum(r.record.verdict is Verdict.ACCEPTED for r in records)

    wait_for(lambda: audited() == len(ids), what="every frame audited (routing still failing)")
    lab.gateway.stop(kill=True)

    async def forget_deliveries(t: Transport) -> None:
        info = await t.js.consumer_info(OUT_STREAM, durable)
        assert info.num_ack_pending + info.num_pending >= len(ids), "the frames must still be unacknowledged"
        await t.js.delete_consumer(OUT_STREAM, durable)

    on_nats(lab, forget_deliveries)
    on_nats(lab, lambda t: move_inbox_stream(t, inbox_subjects))
    lab.start_node("gateway")
    order = _collect(lab, TJ, set(ids))
    assert sorted(order) == sorted(ids), "resumed frames must be routed, each once"
    with AuditClient.from_lab(lab.root) as audit:
        verdicts = [r.record.verdict for i in ids for r in audit.query(AuditFilter(message_id=i))[0]]
    assert verdicts.count(Verdict.ACCEPTED) == len(ids), "audited once"
    assert Verdict.REJECTED not in verdicts, "a redelivered frame was refused as a replay"
    with Client.from_lab(lab.root, RU) as ru:
        assert not any(ru.status(i).rejected for i in ids)


def test_flash_overtakes_a_routine_backlog(lab: Lab) -> None:
    lab.gateway.stop()
    time.sleep(2.5)  # let the stopped gateway's last pull request expire on the server
    with Client.from_lab(lab.root, RU) as ru:
        routine = [
            ru.send_alert(
                [TJ], category=AlertCategory.OTHER, priority=Priority.ROUTINE, subject=f"r{i}", text="t"
            ).message_id
            for i in range(20)
        ]
        time.sleep(1.0)  # the backlog waits in JetStream for the gateway
        flash = ru.send_alert(
            [TJ],
            category=AlertCategory.DRUG_TRAFFICKING,
            priority=Priority.FLASH,
            subject="flash",
            text="now",
        ).message_id
        time.sleep(1.0)
    lab.start_node("gateway")
    order = _collect(lab, TJ, {*routine, flash})
    assert sorted(order) == sorted([*routine, flash])
    assert order[0] == flash, f"FLASH delivered at position {order.index(flash)} of {len(order)}"
