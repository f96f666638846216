"""`liaison demo`: the whole exchange on one machine, narrated for a person.

Brings the lab up, then plays what the offices do: a FLASH drug-trafficking
alert from Dushanbe to both Moscow offices, a case thread between the two
police offices, a consular request from the migration office; follows each
receipt chain to READ; shows a policy rejection and a tampered message
refused at the gateway; finally checks the audit log against the gateway's
signed tree heads. Exits 0 only if every step did what it should.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from exchange.client.sdk import Client
from exchange.core.api import MessageStatus
from exchange.core.clock import now_ms
from exchange.core.codec.envelope import encode_frame
from exchange.core.directory import SignedDirectory
from exchange.core.envelope import Envelope
from exchange.core.errors import LiaisonError
from exchange.core.model import (
    AlertCategory,
    CaseMessage,
    ConsularRequestType,
    Directory,
    Identifier,
    Person,
    Priority,
    ReceiptState,
    Suite,
)
from exchange.core.seal import seal
from exchange.core.wire import out_subject
from exchange.nats.transport import connect
from gateway.audit.codec import decode_record
from gateway.audit.record import Verdict
from gateway.audit.verify import verify_log
from gateway.client import AuditClient, AuditFilter
from keys.keystore import open_keystore, passphrase_from
from liaison.lab.lab import Lab
from liaison.logs import configure

__all__ = ["run_demo"]

WAIT_S = 20.0


@dataclass
class _Report:
    rows: list[tuple[str, str, str]] = field(default_factory=list)
    failed: bool = False

    def step(self, title: str) -> None:
        print(f"\n== {title}")

    def ok(self, what: str, detail: str = "") -> None:
        print(f"  ok   {what}" + (f"  ({detail})" if detail else ""))
        self.rows.append(("ok", what, detail))

    def fail(self, what: str, detail: str) -> None:
        print(f"  FAIL {what}: {detail}")
        self.rows.append(("FAIL", what, detail))
        self.failed = True

    def check(self, condition: bool, what: str, detail: str = "") -> None:
        (self.ok if condition else self.fail)(what, detail or ("" if condition else "not as expected"))


def _wait_for(predicate: Callable[[], bool], timeout: float = WAIT_S) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def _states(status: MessageStatus) -> str:
    return ", ".join(f"{r.recipient}={r.label}" for r in status.recipients)


def _all_at(client: Client, message_id: str, state: ReceiptState) -> Callable[[], bool]:
    def check() -> bool:
        s = client.status(message_id)
        return all(r.state is not None and r.state >= state for r in s.recipients)

    return check


def _receive(client: Client, expected: set[str], report: _Report, office: str) -> list[str]:
    seen: list[str] = []
    for d in client.subscribe(wait_s=WAIT_S):
        if d.message_id in expected:
            seen.append(d.message_id)
            subject = getattr(d.body, "subject", "") or getattr(d.body, "text", "")[:50]
            print(
                f"  <<   {office} got {d.priority.label.upper()} {d.kind.label} from {d.sender}: {subject!r}"
            )
            client.ack(d.message_id)
        if set(seen) >= expected:
            break
    report.check(set(seen) >= expected, f"{office} received and acknowledged {len(expected)} message(s)")
    return seen


def _tampered_envelope(lab: Lab, sender: str, recipient: str, directory: Directory) -> Envelope:
    """What a faulty or compromised node might put on the wire: one ciphertext byte flipped."""
    assert lab.deployment is not None
    identity = open_keystore(lab.deployment.keys_dir(sender), passphrase_from(lab.deployment.passphrase_file))
    now = now_ms()
    envelope = seal(
        CaseMessage(case_id="TAMPER-TEST", text="this text is altered in transit"),
        sender=sender,
        sender_keys=identity.signing_keys(Suite.CLASSIC),
        recipients=[recipient],
        directory=directory,
        suite=Suite.CLASSIC,
        now_ms=now,
        ttl_s=3600,
        case_id="TAMPER-TEST",
    )
    flipped = bytearray(envelope.ciphertext)
    flipped[len(flipped) // 2] ^= 0x01
    return Envelope(envelope.header, envelope.header_bytes, envelope.signatures, bytes(flipped))


async def _publish_raw(lab: Lab, office: str, payload: bytes, msg_id: str) -> None:
    """Publish as ``office``'s node would (its certificate, its out subject): a compromised node."""
    transport = await connect(lab.nats_url, "demo-tamper", **lab.nats_connect_args(office))
    subject = out_subject(office)
    try:
        await transport.publish(subject, payload, msg_id, 1)
    finally:
        await transport.close()


def _scenario(lab: Lab, report: _Report) -> None:
    assert lab.deployment is not None
    assert lab.nats is not None
    directory = SignedDirectory.from_bytes(lab.deployment.directory_file.read_bytes()).directory
    offices = [o.id for o in lab.deployment.inventory.offices]
    dushanbe, moscow_mvd, moscow_migration = offices[0], offices[1], offices[2]
    ru, tj, mig = (Client.from_lab(lab.root, o) for o in (dushanbe, moscow_mvd, moscow_migration))
    audit = AuditClient.from_lab(lab.root)
    try:
        report.step(f"FLASH drug-trafficking alert {dushanbe} -> {moscow_mvd}, {moscow_migration}")
        courier = Person(
            "Rustam K.",
            "1990-04-12",
            "TJ",
            (Identifier("passport", "400123456", "TJ"),),
            role="suspect",
        )
        alert = ru.send_alert(
            [moscow_mvd, moscow_migration],
            category=AlertCategory.DRUG_TRAFFICKING,
            priority=Priority.FLASH,
            subject="Heroin consignment on the Dushanbe-Moscow train",
            text="Courier boarded train 019 with 4 kg concealed in luggage; arrival Kazansky station.",
            persons=[courier],
        )
        report.ok("alert ACCEPTED by the sending office", alert.message_id)
        _receive(tj, {alert.message_id}, report, moscow_mvd)
        _receive(mig, {alert.message_id}, report, moscow_migration)
        reached = _wait_for(_all_at(ru, alert.message_id, ReceiptState.READ))
        report.check(
            reached,
            "receipt chain ACCEPTED -> STAMPED -> DELIVERED -> READ",
            _states(ru.status(alert.message_id)),
        )
        time.sleep(1.5)  # the gateway signs a tree head at least every second while traffic flows
        start_head = audit.tree_head()

        report.step(f"Case thread between {dushanbe} and {moscow_mvd}")
        case_id = "RU-TJ-2026-0042"
        first = ru.send_case_message(
            [moscow_mvd], case_id=case_id, text="Requesting phone records of the courier."
        )
        _receive(tj, {first.message_id}, report, moscow_mvd)
        reply = tj.send_case_message(
            [dushanbe],
            case_id=case_id,
            text="Records attached; two numbers in Khujand.",
            in_reply_to=first.message_id,
        )
        _receive(ru, {reply.message_id}, report, dushanbe)
        thread = ru.case(case_id)
        report.check(
            len(thread) == 2,
            f"case {case_id} holds the whole thread at {dushanbe}",
            f"{len(thread)} messages",
        )

        report.step(f"Consular request {moscow_migration} -> {dushanbe}")
        citizen = Person("Dilshod N.", "1985-09-30", "TJ", (Identifier("passport", "400765432", "TJ"),))
        consular = mig.send_consular_request(
            [dushanbe],
            citizen=citizen,
            request_type=ConsularRequestType.LEGAL_CONSULTATION,
            subject="Legal consultation for a detained labour migrant",
            text="Citizen detained in Dushanbe transit; requests counsel and notification of family.",
        )
        _receive(ru, {consular.message_id}, report, dushanbe)
        report.check(
            _wait_for(_all_at(mig, consular.message_id, ReceiptState.READ)), "consular request reached READ"
        )

        report.step(f"Policy: {moscow_migration} may not send police alerts")
        denied = mig.send_alert(
            [dushanbe],
            category=AlertCategory.WANTED_PERSON,
            priority=Priority.ROUTINE,
            subject="(not allowed by the directory's policy)",
            text="...",
        )
        rejected = _wait_for(lambda: mig.status(denied.message_id).rejected)
        status = mig.status(denied.message_id)
        reason = status.recipients[0].rejection
        report.check(
            rejected and reason is not None and reason.label == "policy-denied",
            "gateway refused it with a signed rejection",
            f"reason={reason.label if reason else None}",
        )

        report.step("A tampered envelope on the wire")
        bad = _tampered_envelope(lab, moscow_mvd, dushanbe, directory)
        bad_id = bad.header.context.message_id
        asyncio.run(_publish_raw(lab, moscow_mvd, encode_frame(bad), bad_id))

        def refused() -> bool:
            records, _ = audit.query(AuditFilter(message_id=bad_id))
            return any(r.record.verdict is Verdict.REJECTED for r in records)

        report.check(_wait_for(refused), "gateway refused and audited it", "digest-mismatch")
        records, _ = audit.query(AuditFilter(message_id=bad_id))
        if records:
            r = records[0].record
            why = r.reason.label if r.reason else ""
            print(f"  audit #{records[0].index}: {r.verdict.label} {why} — {r.detail}")

        report.step("Audit log: signed tree heads, inclusion and consistency")
        time.sleep(1.5)  # let the gateway sign a head that covers everything above
        head = audit.tree_head()
        entries = [(r.index, r.entry) for r in audit.all_records()]
        consistency = {}
        if 0 < start_head.tree_head.size < head.tree_head.size:
            consistency[(start_head.tree_head.size, head.tree_head.size)] = audit.consistency_proof(
                start_head.tree_head.size, head.tree_head.size
            )
        try:
            verify_log(entries[: head.tree_head.size], [start_head, head], directory, consistency)
            report.ok(
                "every record hashes to the gateway-signed root",
                f"size {head.tree_head.size}, root {head.tree_head.root.hex()[:16]}…",
            )
        except LiaisonError as e:
            report.fail("audit log verification", str(e))
        verdicts: dict[str, int] = {}
        for _, entry in entries:
            v = decode_record(entry).verdict.label
            verdicts[v] = verdicts.get(v, 0) + 1
        print("  records by verdict: " + ", ".join(f"{k}={v}" for k, v in sorted(verdicts.items())))
    finally:
        for c in (ru, tj, mig):
            c.close()
        audit.close()


def run_demo(root: Path | None = None) -> int:
    configure("demo", "console", "error")  # the narration is the output; node logs go to the lab's logs/
    report = _Report()
    with tempfile.TemporaryDirectory(prefix="liaison-demo-") as tmp:
        lab = Lab(root or Path(tmp))
        print(f"Starting the lab in {lab.root} (nats-server, gateway, offices)...")
        started = time.monotonic()
        lab.start()
        try:
            print(f"Lab up in {time.monotonic() - started:.1f}s:")
            for name, node in lab.nodes.items():
                print(f"  {name:24} gRPC {node.grpc}")
            _scenario(lab, report)
        finally:
            lab.stop()
    print("\nSummary")
    print("-------")
    for mark, what, detail in report.rows:
        print(f"{mark:5} {what}" + (f" — {detail}" if detail else ""))
    print("\n" + ("DEMO FAILED" if report.failed else "All steps passed."))
    return 1 if report.failed else 0
