"""Statements prove what they claim (issue 11, section 5), through real processes.

One lab (real nats-server, gateway and office processes). The attacks:
a gateway-signed rejection of one office's submission replayed into another
office's inbox; a refused frame audited under the sender it claims; an
envelope backdated to before its key's revocation; a receipt dated far in the
past. Frames are put on NATS the way a hostile office (its own out subject)
or a hostile backbone (any subject, with the gateway's NATS identity) could.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from exchange.client.sdk import Client
from exchange.core.clock import now_ms
from exchange.core.codec.envelope import decode_frame, encode_frame
from exchange.core.directory import SignedDirectory
from exchange.core.envelope import Envelope, Receipt, Rejection, SignedStatement
from exchange.core.errors import RemoteError
from exchange.core.model import ReceiptState, Suite
from exchange.core.seal import sign_statement
from exchange.core.wire import IN_STREAM, in_subject
from exchange.nats.transport import connect
from gateway.audit.record import Verdict
from gateway.client import AuditClient, AuditFilter
from liaison.commands import directory as cmd_directory
from liaison.lab.lab import Lab
from tests.integration.labutil import INVENTORY, identity, inject, sealed, wait_for

pytestmark = pytest.mark.slow

RU, TJ, MIG = "ru-mvd-dushanbe", "tj-mvd-moscow", "tj-migration-moscow"
AUTHORITIES = ("ru-embassy-dushanbe", "tj-embassy-moscow")
TTL_S = 20  # the lowered max_ttl_s of the statement-bound test


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with Lab(tmp_path_factory.mktemp("lab"), inventory=INVENTORY) as lab:
        yield lab


def _records(lab: Lab, message_id: str) -> list[tuple[Verdict, str, str | None]]:
    with AuditClient.from_lab(lab.root) as audit:
        records, _ = audit.query(AuditFilter(message_id=message_id))
    return [(r.record.verdict, r.record.sender, r.record.reason and r.record.reason.label) for r in records]


def _as_backbone(lab: Lab, action: str, subject: str, data: bytes = b"") -> bytes | None:
    """Read the last message of an inbox subject, or publish onto one, with the gateway's NATS identity."""
    assert lab.deployment is not None
    args = lab.nats_connect_args(lab.deployment.inventory.gateway.id)

    async def go() -> bytes | None:
        transport = await connect(lab.nats_url, "test-backbone", **args)
        try:
            if action == "read":
                msg = await transport.js.get_last_msg(IN_STREAM, subject)
                return msg.data
            await transport.publish(subject, data, f"replayed-{time.time_ns()}", 4)
            return None
        finally:
            await transport.close()

    return asyncio.run(go())


def _sent_envelope(lab: Lab, office: str, message_id: str) -> bytes:
    """The frame the office's node published for ``message_id`` (what its recipients received)."""
    db = sqlite3.connect(lab.root / "nodes" / office / "office.db")
    try:
        row = db.execute("SELECT payload FROM frames WHERE msg_id = ?", (message_id,)).fetchone()
    finally:
        db.close()
    assert row is not None
    return bytes(row[0])


def _publish_update(lab: Lab, tmp: Path, *edits: list[str]) -> SignedDirectory:
    """The next directory version with ``edits`` (CLI argv tails), signed and published; the one before."""
    assert lab.deployment is not None
    with AuditClient(lab.gateway.grpc, tls=lab.client_tls(AUTHORITIES[0])) as audit:
        before = SignedDirectory.from_bytes(audit.directory())
        source, draft, out = tmp / "current.pb", tmp / "next.json", tmp / "next.pb"
        source.write_bytes(before.to_bytes())
        assert (
            cmd_directory.main(["directory", "next-version", "--from", str(source), "--out", str(draft)]) == 0
        )
        for edit in edits:
            assert cmd_directory.main(["directory", edit[0], "--file", str(draft), *edit[1:]]) == 0
        signing = draft
        for authority in AUTHORITIES:
            sign = ["directory", "sign", "--file", str(signing), "--authority", authority]
            sign += ["--keys", str(lab.deployment.keys_dir(authority))]
            sign += ["--passphrase-file", str(lab.deployment.passphrase_file), "--out", str(out)]
            assert cmd_directory.main(sign) == 0
            signing = out
        assert audit.publish_directory(out.read_bytes()) == before.version + 1
    return before


def _log_lines(lab: Lab, node: str, needle: str) -> list[str]:
    return [line for line in lab.nodes[node].log.read_text(errors="replace").splitlines() if needle in line]


def _status(client: Client, message_id: str) -> bool:
    try:
        return client.status(message_id).rejected
    except RemoteError:
        return False


def test_rejection_is_bound_to_the_sender_and_the_refused_frame_to_its_office(lab: Lab) -> None:
    """MIG re-submits RU's message as its own; the rejection, replayed to RU, must not count.

    Failed before the fix: RU's ``GetStatus`` showed its delivered message as
    rejected (``sender-mismatch``) once the gateway's rejection of MIG's frame was
    put into RU's inbox, and the audit record of MIG's refused frame named
    ``ru-mvd-dushanbe`` (the claimed sender) as its sender.
    """
    with Client.from_lab(lab.root, RU) as ru, Client.from_lab(lab.root, MIG) as mig:
        sent = ru.send_case_message([MIG], case_id="CASE-BIND", text="for the migration office")
        wait_for(
            lambda: any(d.message_id == sent.message_id for d in mig.subscribe(wait_s=1.0)), what="delivery"
        )
        frame = _sent_envelope(lab, RU, sent.message_id)
        assert isinstance(decode_frame(frame), Envelope)

        # MIG's own frame (stopped node: its inbox keeps what the gateway answers).
        lab.nodes[MIG].stop()
        try:
            inject(lab, MIG, frame, f"resubmitted-{sent.message_id}")

            def refused() -> list[tuple[Verdict, str, str | None]]:
                return [r for r in _records(lab, sent.message_id) if r[0] is Verdict.REJECTED]

            wait_for(lambda: bool(refused()), what="the re-submission audited")
            assert (Verdict.ACCEPTED, RU, None) in _records(lab, sent.message_id)
            # The record names the office the frame came from, not the sender it claimed.
            assert refused() == [(Verdict.REJECTED, MIG, "sender-mismatch")]

            answer = _as_backbone(lab, "read", in_subject(MIG))
            assert answer is not None
            rejection = decode_frame(answer)
            assert isinstance(rejection, SignedStatement)
            assert isinstance(rejection.statement, Rejection)
            assert rejection.statement.message_id == sent.message_id
            assert rejection.statement.sender == MIG

            # Replayed into RU's inbox: RU refuses it, its message stays delivered.
            before = len(_log_lines(lab, RU, "inbound_refused"))
            _as_backbone(lab, "publish", in_subject(RU), answer)
            wait_for(
                lambda: _status(ru, sent.message_id) or len(_log_lines(lab, RU, "inbound_refused")) > before,
                what="RU handling the replayed rejection",
            )
            assert not ru.status(sent.message_id).rejected
        finally:
            lab.start_node(MIG)


def test_backdated_envelope_does_not_outlive_the_revocation(lab: Lab, tmp_path: Path) -> None:
    """Sealed with a revoked key and dated before the revocation, sent after it: refused.

    Failed before the fix: the envelope was ACCEPTED (the key was judged at the
    sender-chosen ``created_ms``), so a stolen key kept working by backdating.
    """
    assert lab.deployment is not None
    with AuditClient.from_lab(lab.root) as audit:
        current = SignedDirectory.from_bytes(audit.directory()).directory
    office = current.office(TJ)
    assert office is not None
    key = next(k for k in office.keys if k.algorithm.name == "ED25519" and k.valid_at(now_ms()))
    time.sleep(0.1)
    revoked_at = now_ms()
    revoke = ["set-key-status", "--key-id", key.key_id, "--status", "revoked", "--at-ms", str(revoked_at)]
    before = _publish_update(lab, tmp_path, revoke)

    # The stolen key, used after T with created_ms set before T.
    created = max(revoked_at - 5_000, key.not_before_ms + 1)
    ttl_s = min(3600, before.directory.limits.max_ttl_s)
    backdated = sealed(lab, TJ, [RU], now_ms=created, ttl_s=ttl_s, in_directory=before.directory)
    message_id = backdated.header.context.message_id
    inject(lab, TJ, backdated, message_id)
    wait_for(lambda: bool(_records(lab, message_id)), what="the backdated envelope audited")
    assert _records(lab, message_id) == [(Verdict.REJECTED, TJ, "key-revoked")]


def test_receipt_dated_longer_ago_than_a_message_may_live_is_refused(lab: Lab, tmp_path: Path) -> None:
    """A READ receipt dated before the statement bound (``max_ttl_s`` ago) is refused at the gateway.

    The lab's keys are seconds old, so the directory's ``max_ttl_s`` is lowered to
    20 s first: a receipt dated 25 s ago is then inside its key's window but past
    the bound. Failed before the fix: the gateway audited it as a RECEIPT and
    forwarded it (statements had no lower time bound).
    """
    assert lab.deployment is not None
    _publish_update(lab, tmp_path, ["set-limits", "--max-ttl-s", str(TTL_S)])
    with Client.from_lab(lab.root, RU) as ru, Client.from_lab(lab.root, MIG) as mig:
        sent = ru.send_case_message([MIG], case_id="CASE-OLD", text="to be receipted")
        wait_for(
            lambda: any(d.message_id == sent.message_id for d in mig.subscribe(wait_s=1.0)), what="delivery"
        )
        header_digest = ru.status(sent.message_id).statements[0].statement.header_digest
    keys = identity(lab, MIG).signing_keys(Suite.CLASSIC)
    signed_after = max(k.not_before_ms for k in identity(lab, MIG).keys) + 1
    wait_for(
        lambda: now_ms() > signed_after + (TTL_S + 5) * 1000,
        timeout=TTL_S + 30,
        what="the key older than the bound",
    )
    receipt = Receipt(
        message_id=sent.message_id,
        state=ReceiptState.READ,
        signer=MIG,
        at_ms=now_ms() - (TTL_S + 5) * 1000,
        header_digest=header_digest,
        sender=RU,
        recipient=MIG,
    )
    inject(lab, MIG, encode_frame(sign_statement(receipt, keys)), f"old-receipt-{sent.message_id}")

    # MIG's own node sent one DELIVERED receipt; the old READ must not become a second.
    def judged() -> bool:
        verdicts = [v for v, _, _ in _records(lab, sent.message_id)]
        return Verdict.REJECTED in verdicts or verdicts.count(Verdict.RECEIPT) > 1

    wait_for(judged, what="the old receipt judged")
    verdicts = [(v, reason) for v, _, reason in _records(lab, sent.message_id)]
    assert verdicts.count((Verdict.RECEIPT, None)) == 1
    assert (Verdict.REJECTED, "expired") in verdicts
