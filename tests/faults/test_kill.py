"""SIGKILL each component at a random point under steady traffic; nothing is lost or doubled.

Every test runs its own lab of real processes (nats-server, gateway, three
office nodes), sends traffic from two offices (case messages and alerts, one
or two recipients each), kills one component at a seeded random point (the
seed is printed; ``LIAISON_FAULT_SEED`` replays it), restarts it, and then
checks the counters: every Send that returned an id has an ACCEPTED receipt,
reached each recipient's agency system exactly once, and is in the audit log
exactly once as ACCEPTED; the log verifies against the current head and is
consistent with the head signed before the fault.

Two more tests shrink JetStream's duplicate window to 1 s (a plain stream
update from the test) so that "offline for longer than the window" fits in
CI: an office offline past the window, and a receipt published again past it.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import nats.js.errors
import pytest

from exchange.core.model import Reason
from exchange.core.wire import IN_STREAM, OUT_STREAM, in_subject
from exchange.nats.transport import Transport
from gateway.audit.record import Verdict
from gateway.client import AuditClient, AuditFilter
from liaison.lab.lab import Lab
from tests.faults.faultutil import (
    Inboxes,
    KillPlan,
    Plan,
    Traffic,
    audit_verdicts,
    count_counters,
    fault_rng,
    on_nats,
    verify_audit_log,
    wait_delivered,
)
from tests.integration.labutil import INVENTORY, wait_for

RU, TJ, MIG = "ru-mvd-dushanbe", "tj-mvd-moscow", "tj-migration-moscow"
OFFICES = [RU, TJ, MIG]


@pytest.fixture
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    lab = Lab(tmp_path_factory.mktemp("lab"), inventory=INVENTORY)
    with lab:
        yield lab


def _plans(ru: int = 60, mig: int = 40) -> list[Plan]:
    # The police office sends alerts and case messages to one or both Tajik offices; the
    # migration office (no alerts by policy) sends case messages to one or both police offices.
    return [
        Plan(RU, ru, ((TJ,), (TJ, MIG), (TJ,), (MIG,))),
        Plan(MIG, mig, ((TJ,), (RU, TJ)), alerts=False),
    ]


@dataclass(frozen=True)
class Component:
    """What a test kills: a lab node by name, or (``node=""``) the nats-server."""

    name: str
    node: str

    def kill(self, lab: Lab) -> None:
        if self.node:
            lab.nodes[self.node].stop(kill=True)
        else:
            assert lab.nats is not None
            lab.nats.kill()

    def restart(self, lab: Lab) -> None:
        if self.node:
            lab.start_node(self.node)
        else:
            assert lab.nats is not None
            lab.nats.start()  # same port (pinned after the first start), same store dir


COMPONENTS = [
    pytest.param(Component("gateway", "gateway"), id="gateway"),
    pytest.param(Component("recipient office", TJ), id="recipient-office"),
    pytest.param(Component("sending office", RU), id="sending-office"),
    pytest.param(Component("nats-server", ""), id="nats-server"),
]


@pytest.mark.slow
@pytest.mark.parametrize("component", COMPONENTS)
def test_sigkill_at_a_random_point_loses_and_duplicates_nothing(lab: Lab, component: Component) -> None:
    """SIGKILL one component mid-traffic, restart it: all four counters equal, log verifies.

    - gateway: frames it had fetched but not acknowledged come back after its ack wait;
      those already audited are resumed (routed again from their record), not re-audited.
    - recipient office (tj-mvd-moscow, which both senders address): routed frames wait in
      JetStream; one it stored but had not acknowledged is redelivered and dropped by id.
    - sending office (ru-mvd-dushanbe, also a recipient): Sends fail while it is down and
      are retried with the same idempotency key; its accepted-but-unpublished out-queue is
      published after the restart.
    - nats-server: every node keeps serving gRPC and reconnects on its own; JetStream
      restores streams and consumers from disk (``sync_interval: always``).
    """
    name = f"kill {component.name}"
    rng = fault_rng(name)
    traffic = Traffic(lab, _plans(), tag=f"k{rng.randrange(10**6)}")
    plan = KillPlan.draw(rng, traffic.total)
    print(f"[{name}] {plan}")
    with AuditClient.from_lab(lab.root) as audit:
        before = audit.tree_head()
    started = time.monotonic()
    with Inboxes(lab, OFFICES) as inboxes:
        traffic.start()
        wait_for(lambda: traffic.count() >= plan.after_sent, what=f"{plan.after_sent} messages sent")
        time.sleep(plan.extra_s)
        killed_at = traffic.count()
        others = {n: node.pid for n, node in lab.nodes.items() if n != component.node}
        component.kill(lab)
        time.sleep(plan.down_s)
        component.restart(lab)
        traffic.join()
        took = wait_delivered(inboxes, traffic)
    # Nothing else was restarted: the survivors reconnected (to NATS, to the gateway) on their own.
    assert {n: lab.nodes[n].pid for n in others} == others
    print(f"[{name}] killed after {killed_at} sent; all delivered {took:.1f}s after the last Send")
    count_counters(lab, name, traffic, inboxes)
    verify_audit_log(lab, [before])
    print(f"[{name}] receipts audited more than once: {_receipts_audited_twice(lab)}")
    print(f"[{name}] total {time.monotonic() - started:.1f}s")


# --- an office offline for longer than JetStream's duplicate window ---------------------

SHORT_WINDOW_S = 1.0


def _set_duplicate_window(lab: Lab, seconds: float) -> None:
    async def work(t: Transport) -> None:
        for stream in (OUT_STREAM, IN_STREAM):
            config = (await t.js.stream_info(stream)).config
            config.duplicate_window = seconds
            await t.js.update_stream(config)
            assert (await t.js.stream_info(stream)).config.duplicate_window == seconds

    on_nats(lab, work)


def _last_seq(lab: Lab, stream: str) -> int:
    """The stream's last sequence: frames are removed once consumed (work queue), sequences stay."""

    async def work(t: Transport) -> int:
        return (await t.js.stream_info(stream)).state.last_seq

    return on_nats(lab, work)


def _replay_routed(lab: Lab, office: str) -> list[bool]:
    """Publish every routed frame in ``office``'s inbox stream again under its own Nats-Msg-Id.

    This is exactly what a gateway does when it resumes a frame (routes it again with
    the same deterministic id) after dying between routing and acknowledging; here the
    gateway's redelivery timing is taken out of the test. Returns PubAck.duplicate per frame.
    The office must be stopped: the stream is a work queue, so only the frames it has not
    consumed are still there (the others have gaps in the sequence).
    """

    async def work(t: Transport) -> list[bool]:
        info = await t.js.stream_info(IN_STREAM)
        duplicates: list[bool] = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            try:
                msg = await t.js.get_msg(IN_STREAM, seq)
            except nats.js.errors.NotFoundError:
                continue  # consumed and removed
            msg_id = (msg.headers or {}).get("Nats-Msg-Id", "")
            if msg.subject != in_subject(office) or ".routed." not in msg_id:
                continue
            priority = int((msg.headers or {}).get("Liaison-Priority", "1"))
            ack = await t.publish(in_subject(office), msg.data or b"", msg_id, priority)
            duplicates.append(ack.duplicate)
        return duplicates

    return on_nats(lab, work)


def _forget_published(lab: Lab, office: str) -> int:
    """Mark a stopped office's whole out-queue unpublished, as if every publish had not been recorded."""
    db = lab.root / "nodes" / office / "office.db"
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        return conn.execute("UPDATE frames SET published = 0").rowcount


@pytest.mark.slow
def test_office_offline_longer_than_the_duplicate_window(lab: Lab) -> None:
    """Duplicates that JetStream no longer catches are caught by the nodes, by message id.

    JetStream's duplicate window (120 s in production) is shrunk to 1 s on LIAISON_OUT
    and LIAISON_IN for this lab with a plain ``update_stream`` from the test (no product
    code changes; the gateway would reset it to 120 s only when restarted, which this test
    does not do). With the window that short, "offline for longer than the window" is
    real: the recipient tj-mvd-moscow is SIGKILLed at a random point under traffic and
    stays down for several windows while

    1. every routed frame in its inbox stream is published again under its original
       Nats-Msg-Id, as a resuming gateway would (JetStream stores each as new: duplicate=False);
    2. the nats-server is SIGKILLed and restarted;
    3. a second burst of traffic is sent after the restart;
    4. the sending office ru-mvd-dushanbe, SIGKILLed, comes back with its whole out-queue
       marked unpublished (as after a crash between publishing and recording it) and
       publishes everything again, long after the window: the gateway must refuse each
       message as a REPLAY from its audit log instead of auditing or routing it twice.

    Then the recipient returns and each message reaches each agency system exactly once.
    """
    name = "offline beyond the duplicate window"
    rng = fault_rng(name)
    _set_duplicate_window(lab, SHORT_WINDOW_S)
    first = Traffic(lab, _plans(40, 20), tag=f"w{rng.randrange(10**6)}")
    plan = KillPlan.draw(rng, first.total)
    print(f"[{name}] recipient killed at {plan}")
    with AuditClient.from_lab(lab.root) as audit:
        before = audit.tree_head()
    with Inboxes(lab, OFFICES) as inboxes:
        first.start()
        wait_for(lambda: first.count() >= plan.after_sent, what=f"{plan.after_sent} messages sent")
        time.sleep(plan.extra_s)
        lab.nodes[TJ].stop(kill=True)
        offline_since = time.monotonic()
        first.join()
        wait_for(
            lambda: all(v[Verdict.ACCEPTED] == 1 for v in audit_verdicts(lab, list(first.sent)).values()),
            what="the gateway to accept the first burst",
        )
        lab.nodes[RU].stop(kill=True)
        republished = _forget_published(lab, RU)
        time.sleep(SHORT_WINDOW_S * 2)  # every routed frame is now older than the window

        copies = _replay_routed(lab, TJ)
        assert copies, "the offline office's inbox stream holds routed frames"
        assert not any(copies), "past the window JetStream stores a republished id as a new message"

        assert lab.nats is not None
        lab.nats.kill()
        time.sleep(0.5)
        lab.nats.start()
        second = Traffic(lab, [Plan(MIG, 20, ((TJ,), (RU, TJ)), alerts=False)], tag=first.tag + "b")
        second.start()
        second.join()

        out_before = _last_seq(lab, OUT_STREAM)
        lab.start_node(RU)
        ru_ids = first.by_sender[RU]
        wait_for(
            lambda: _replays_refused(lab, ru_ids, after_seq=out_before) == len(ru_ids),
            what="the gateway to refuse every republished message as a REPLAY",
        )
        out_after = _last_seq(lab, OUT_STREAM)
        assert out_after - out_before >= len(ru_ids), "JetStream took the republished frames as new"

        offline_s = time.monotonic() - offline_since
        lab.start_node(TJ)
        first.absorb(second)
        took = wait_delivered(inboxes, first)
    print(
        f"[{name}] recipient offline {offline_s:.1f}s (window {SHORT_WINDOW_S}s); "
        f"{len(copies)} routed copies replayed; {republished} out-queue frames republished "
        f"(the out stream grew by {out_after - out_before}); delivered {took:.1f}s after the restart"
    )
    count_counters(lab, name, first, inboxes)
    verify_audit_log(lab, [before])
    print(f"[{name}] receipts audited more than once: {_receipts_audited_twice(lab)}")


def _replays_refused(lab: Lab, ids: list[str], *, after_seq: int) -> int:
    """How many of ``ids`` the gateway refused (and audited) as a REPLAY of a frame stored past ``after_seq``.

    The out-stream sequence in the record shows JetStream stored the republished frame as new.
    """
    with AuditClient.from_lab(lab.root) as audit:
        return sum(
            any(
                r.record.verdict is Verdict.REJECTED
                and r.record.reason is Reason.REPLAY
                and r.record.source_seq > after_seq
                for r in audit.all_records(AuditFilter(message_id=m))
            )
            for m in ids
        )


def _receipts_audited_twice(lab: Lab) -> int:
    """Receipt records with the same (message, state, signer) as an earlier one: observed, not a counter."""
    with AuditClient.from_lab(lab.root) as audit:
        seen = Counter(
            (r.record.message_id, r.record.receipt_state, r.record.receipt_signer)
            for r in audit.all_records()
            if r.record.verdict is Verdict.RECEIPT
        )
    return sum(n - 1 for n in seen.values())


def _gateway_drained(lab: Lab) -> bool:
    async def work(t: Transport) -> bool:
        consumers = await t.js.consumers_info(OUT_STREAM)
        return all(c.num_pending == 0 and c.num_ack_pending == 0 for c in consumers)

    return on_nats(lab, work)


def test_a_receipt_published_again_is_audited_once(lab: Lab) -> None:
    """A DELIVERED or READ receipt that reaches the gateway a second time is not audited again.

    The office ru-mvd-dushanbe receives and acknowledges five messages, then is SIGKILLed
    and comes back with its out-queue marked unpublished (a crash between publishing and
    recording it), after the (shrunk, 1 s) duplicate window: it publishes its receipts
    again. The gateway already holds each receipt; a second RECEIPT record for the same
    (message, state, signer) would be a duplicate in the audit log. The same happens,
    inside the window, when the gateway audits a receipt and then loses the
    acknowledgement (gateway or nats-server killed): the redelivered frame is audited again.
    """
    _set_duplicate_window(lab, SHORT_WINDOW_S)
    traffic = Traffic(lab, [Plan(MIG, 5, ((RU,),), alerts=False)], tag="receipts")
    with Inboxes(lab, [RU]) as inboxes:
        traffic.start()
        traffic.join()
        wait_delivered(inboxes, traffic)
        ids = list(traffic.sent)
        wait_for(
            lambda: sum(v[Verdict.RECEIPT] for v in audit_verdicts(lab, ids).values()) == 2 * len(ids),
            what="the DELIVERED and READ receipts of every message to be audited",
        )
        lab.nodes[RU].stop(kill=True)
        republished = _forget_published(lab, RU)
        time.sleep(SHORT_WINDOW_S * 2)
        before = _last_seq(lab, OUT_STREAM)  # nobody else publishes on the out stream now
        lab.start_node(RU)
        wait_for(
            lambda: _last_seq(lab, OUT_STREAM) >= before + republished,
            what="the office to publish its out-queue again",
        )
        wait_for(lambda: _gateway_drained(lab), what="the gateway to handle every frame")
    twice = _receipts_audited_twice(lab)
    print(f"\n[receipt again] {republished} receipts republished; audited more than once: {twice}")
    assert twice == 0, f"{twice} receipts have a second RECEIPT record in the audit log"
