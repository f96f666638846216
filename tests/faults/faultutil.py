"""Helpers for fault-injection tests: steady traffic, live inboxes, the four counters.

A fault test runs a lab of real processes, drives traffic from sender
threads (each Send retried with its idempotency key while the office node
is unreachable, so a Send that crashed half-way is never counted twice),
reads every recipient's inbox the way an agency system does (subscribe from
the last cursor seen, acknowledge each message, reconnect after an outage),
kills one component at a seeded random point and finally checks the
counters: sent, accepted, delivered, audited, all equal, and the audit log
verifies. This module only observes through the public interfaces (client
SDK, audit API, NATS); it does not reach into node internals.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Generator
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from exchange.client.sdk import Client
from exchange.core.api import Delivery
from exchange.core.directory import SignedDirectory
from exchange.core.envelope import Receipt
from exchange.core.errors import LiaisonError, RemoteError
from exchange.core.model import AlertCategory, Priority, ReceiptState
from exchange.nats.transport import Transport, connect
from gateway.audit.record import Verdict
from gateway.audit.treehead import SignedTreeHead
from gateway.audit.verify import verify_log
from gateway.client import AuditClient, AuditFilter
from liaison.lab.lab import Lab
from tests.integration.labutil import wait_for

__all__ = [
    "DELIVERY_TIMEOUT_S",
    "Counters",
    "Inboxes",
    "KillPlan",
    "Plan",
    "Traffic",
    "audit_verdicts",
    "count_counters",
    "fault_rng",
    "on_nats",
    "verify_audit_log",
    "wait_delivered",
]

T = TypeVar("T")

SEED_ENV = "LIAISON_FAULT_SEED"
RETRYABLE = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED"})
RETRY_PAUSE_S = 0.5
SEND_RETRY_S = 60.0
DELIVERY_TIMEOUT_S = 120.0


def fault_rng(name: str) -> random.Random:
    """A seeded RNG; the seed is printed, and ``LIAISON_FAULT_SEED=<seed>`` replays a run."""
    given = os.environ.get(SEED_ENV)
    seed = int(given) if given else random.SystemRandom().randrange(2**32)
    print(f"\n[{name}] seed={seed} (re-run with {SEED_ENV}={seed})")
    return random.Random(seed)


@dataclass(frozen=True)
class KillPlan:
    """When to kill (after ``after_sent`` messages, then ``extra_s``) and for how long."""

    after_sent: int
    extra_s: float
    down_s: float

    @classmethod
    def draw(cls, rng: random.Random, total: int, *, down: tuple[float, float] = (0.5, 3.0)) -> KillPlan:
        return cls(
            after_sent=rng.randint(max(1, total // 10), total * 7 // 10),
            extra_s=round(rng.uniform(0.0, 0.1), 3),
            down_s=round(rng.uniform(*down), 2),
        )


@dataclass(frozen=True)
class Plan:
    """What one sender thread sends: ``count`` messages, alerts every third if it may send them."""

    office: str
    count: int
    recipients: tuple[tuple[str, ...], ...]  # cycled through
    alerts: bool = True
    pace_s: float = 0.03


@dataclass
class Traffic:
    """Sender threads; ``sent`` maps every message id a Send returned to its recipients."""

    lab: Lab
    plans: list[Plan]
    tag: str
    sent: dict[str, tuple[str, ...]] = field(default_factory=dict)
    by_sender: dict[str, list[str]] = field(default_factory=dict)
    retries: int = 0
    errors: list[BaseException] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(p.count for p in self.plans)

    def count(self) -> int:
        with self._lock:
            return len(self.sent)

    def absorb(self, other: Traffic) -> None:
        """Count a finished burst's messages with this one's."""
        with self._lock:
            self.sent.update(other.sent)
            for office, ids in other.by_sender.items():
                self.by_sender.setdefault(office, []).extend(ids)
            self.retries += other.retries

    def start(self) -> Traffic:
        for plan in self.plans:
            thread = threading.Thread(target=self._run, args=(plan,), name=f"send-{plan.office}")
            thread.start()
            self._threads.append(thread)
        return self

    def join(self, timeout: float = SEND_RETRY_S + 30.0) -> None:
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(timeout=max(0.1, deadline - time.monotonic()))
        assert not any(t.is_alive() for t in self._threads), "sender threads did not finish in time"
        assert not self.errors, f"a sender failed: {self.errors[0]!r}"
        assert self.count() == self.total, f"sent {self.count()} of {self.total}"

    def _run(self, plan: Plan) -> None:
        try:
            with Client.from_lab(self.lab.root, plan.office) as client:
                for i in range(plan.count):
                    recipients = plan.recipients[i % len(plan.recipients)]
                    message_id = self._send(client, plan, i, recipients)
                    with self._lock:
                        self.sent[message_id] = recipients
                        self.by_sender.setdefault(plan.office, []).append(message_id)
                    time.sleep(plan.pace_s)
        except Exception as e:  # reported by join()
            self.errors.append(e)

    def _send(self, client: Client, plan: Plan, i: int, recipients: tuple[str, ...]) -> str:
        key = f"{self.tag}-{plan.office}-{i}"
        deadline = time.monotonic() + SEND_RETRY_S
        while True:
            try:
                if plan.alerts and i % 3 == 0:
                    result = client.send_alert(
                        list(recipients),
                        category=AlertCategory.DRUG_TRAFFICKING,
                        priority=(Priority.ROUTINE, Priority.IMMEDIATE, Priority.FLASH)[i % 9 // 3],
                        subject=f"{self.tag} alert {i}",
                        text=f"alert {i} from {plan.office}",
                        idempotency_key=key,
                    )
                else:
                    result = client.send_case_message(
                        list(recipients),
                        case_id=f"{self.tag.upper()}-{i % 5}",
                        text=f"case message {i} from {plan.office}",
                        idempotency_key=key,
                    )
                return result.message_id
            except RemoteError as e:
                # The office node is down (or went down mid-call): the same idempotency key
                # makes the retry return the first attempt's id if that one was stored.
                if e.status not in RETRYABLE or time.monotonic() > deadline:
                    raise
                with self._lock:
                    self.retries += 1
                time.sleep(RETRY_PAUSE_S)


class Inboxes:
    """One agency system per office: streams its inbox from the last cursor, acks, reconnects."""

    def __init__(self, lab: Lab, offices: list[str]) -> None:
        self.lab = lab
        self.received: dict[str, list[str]] = {o: [] for o in offices}
        self.reconnects = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(o,), name=f"inbox-{o}") for o in offices]

    def __enter__(self) -> Inboxes:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=20.0)

    def snapshot(self) -> dict[str, list[str]]:
        with self._lock:
            return {o: list(ids) for o, ids in self.received.items()}

    def has_all(self, sent: dict[str, tuple[str, ...]]) -> bool:
        got = {o: set(ids) for o, ids in self.snapshot().items()}
        return all(m in got[r] for m, rs in sent.items() for r in rs)

    def _run(self, office: str) -> None:
        cursor = 0
        unacked: list[str] = []
        with Client.from_lab(self.lab.root, office) as client:
            while not self._stop.is_set():
                try:
                    while unacked:  # acks lost to an outage: the READ receipt is still owed
                        client.ack(unacked[0])
                        unacked.pop(0)
                    live = client.subscribe(cursor, include_read=True, wait_s=0.5)
                    stream = cast("Generator[Delivery]", live)
                    try:
                        for d in stream:
                            with self._lock:
                                self.received[office].append(d.message_id)
                            cursor = d.cursor
                            unacked.append(d.message_id)
                            client.ack(d.message_id)
                            unacked.pop()
                            if self._stop.is_set():
                                break
                    finally:
                        stream.close()
                except LiaisonError:
                    with self._lock:
                        self.reconnects += 1
                    time.sleep(RETRY_PAUSE_S)


@dataclass(frozen=True)
class Counters:
    sent: int
    accepted: int
    delivered: int
    audited: int

    def line(self, name: str) -> str:
        return (
            f"[{name}] sent={self.sent} accepted={self.accepted} "
            f"delivered={self.delivered} audited={self.audited}"
        )


def _accepted_ids(lab: Lab, traffic: Traffic) -> set[str]:
    ok: set[str] = set()
    for office, ids in traffic.by_sender.items():
        with Client.from_lab(lab.root, office) as client:
            for message_id in ids:
                status = client.status(message_id)
                if any(
                    isinstance(s.statement, Receipt)
                    and s.statement.state is ReceiptState.ACCEPTED
                    and s.statement.signer == office
                    for s in status.statements
                ):
                    ok.add(message_id)
    return ok


def audit_verdicts(lab: Lab, ids: list[str]) -> dict[str, Counter[Verdict]]:
    """Per message id, how many audit records of each verdict the gateway holds."""
    out: dict[str, Counter[Verdict]] = {}
    with AuditClient.from_lab(lab.root) as audit:
        for message_id in ids:
            out[message_id] = Counter(
                r.record.verdict for r in audit.all_records(AuditFilter(message_id=message_id))
            )
    return out


def count_counters(lab: Lab, name: str, traffic: Traffic, inboxes: Inboxes) -> Counters:
    """Compute, print and check the four counters; every mismatch is named in the assertion."""
    sent = traffic.sent
    ids = list(sent)
    accepted = _accepted_ids(lab, traffic)
    received = inboxes.snapshot()
    per_office = {o: Counter(got) for o, got in received.items()}
    duplicates = {o: sorted(m for m, n in c.items() if n > 1) for o, c in per_office.items()}
    strangers = {o: sorted(set(c) - set(sent)) for o, c in per_office.items()}
    delivered = [m for m, rs in sent.items() if all(per_office[r][m] == 1 for r in rs)]
    verdicts = audit_verdicts(lab, ids)
    audited = [m for m in ids if verdicts[m][Verdict.ACCEPTED] == 1]
    counters = Counters(len(sent), len(accepted), len(delivered), len(audited))
    print(counters.line(name) + f" (send retries={traffic.retries}, inbox reconnects={inboxes.reconnects})")
    assert not any(duplicates.values()), f"delivered twice to an agency system: {duplicates}"
    assert not any(strangers.values()), f"delivered but never sent: {strangers}"
    assert counters.accepted == counters.sent, f"no ACCEPTED receipt for {sorted(set(ids) - accepted)}"
    missing = {m: rs for m, rs in sent.items() if m not in set(delivered)}
    assert counters.delivered == counters.sent, f"not delivered exactly once: {missing}"
    wrong = {m: dict(verdicts[m]) for m in ids if verdicts[m][Verdict.ACCEPTED] != 1}
    assert counters.audited == counters.sent, f"not audited exactly once as ACCEPTED: {wrong}"
    return counters


def verify_audit_log(lab: Lab, earlier: list[SignedTreeHead]) -> SignedTreeHead:
    """The whole log verifies against the current head, consistent with every earlier head."""
    assert lab.deployment is not None
    directory = SignedDirectory.from_bytes(lab.deployment.directory_file.read_bytes()).directory
    with AuditClient.from_lab(lab.root) as audit:
        head = audit.tree_head()
        entries = [(r.index, r.entry) for r in audit.all_records()]
        heads = [*earlier, head]
        sizes = sorted({h.tree_head.size for h in heads})
        proofs = {(m, n): audit.consistency_proof(m, n) for m, n in itertools.pairwise(sizes) if m > 0}
    verify_log(entries[: head.tree_head.size], heads, directory, proofs)
    return head


def wait_delivered(inboxes: Inboxes, traffic: Traffic, timeout: float = DELIVERY_TIMEOUT_S) -> float:
    """Wait until every sent message reached every recipient; return how long that took."""
    started = time.monotonic()
    wait_for(lambda: inboxes.has_all(traffic.sent), timeout=timeout, what="every message to be delivered")
    return time.monotonic() - started


def on_nats(lab: Lab, work: Callable[[Transport], Coroutine[Any, Any, T]]) -> T:
    """Run ``work`` on a NATS connection of its own, with the gateway's identity (full rights).

    The side channel does what only the gateway may: change stream settings, read any
    inbox stream, publish routed frames.
    """
    assert lab.deployment is not None
    gateway = lab.deployment.inventory.gateway.id
    url, args = lab.nats_servers(gateway), lab.nats_connect_args(gateway)

    async def go() -> T:
        transport = await connect(url, "fault-test", **args)
        try:
            return await work(transport)
        finally:
            await transport.close()

    return asyncio.run(go())
