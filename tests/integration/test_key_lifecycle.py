"""Key lifecycle end to end through real processes: revocation, refused directories, rotation.

One lab per module (real nats-server, gateway and three office node
processes). Each test starts from the directory the gateway holds now, so
the tests do not depend on their order; they use distinct offices where it
matters (revocation hits tj-mvd-moscow, rotation ru-mvd-dushanbe).
Directory updates go through the same CLI an operator uses
(``directory next-version`` / ``set-key-status`` / ``rotate-key`` / ``sign``)
and are published with ``AuditClient.publish_directory``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from exchange.client.sdk import Client
from exchange.core.api import Delivery
from exchange.core.clock import now_ms
from exchange.core.directory import SignedDirectory
from exchange.core.envelope import Envelope
from exchange.core.errors import RemoteError
from exchange.core.identity import OfficeIdentity
from exchange.core.model import CaseMessage, Directory, Suite
from exchange.core.seal import seal
from exchange.nats.transport import connect
from gateway.audit.record import Verdict
from gateway.client import AuditClient, AuditFilter
from liaison.commands import directory as cmd_directory
from liaison.commands import keys as cmd_keys
from liaison.lab.lab import Lab
from tests.integration.labutil import INVENTORY, identity, inject, sealed, wait_for

pytestmark = pytest.mark.slow

RU, TJ, MIG = "ru-mvd-dushanbe", "tj-mvd-moscow", "tj-migration-moscow"
OFFICES = (RU, TJ, MIG)
AUTHORITIES = ("ru-embassy-dushanbe", "tj-embassy-moscow")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    lab = Lab(tmp_path_factory.mktemp("lab"), inventory=INVENTORY)
    with lab:
        yield lab


@pytest.fixture(scope="module")
def audit(lab: Lab) -> Iterator[AuditClient]:
    """The gateway as an authority (the role that may call PublishDirectory; it may also read)."""
    with AuditClient(lab.gateway.grpc, tls=lab.client_tls(AUTHORITIES[0])) as client:
        yield client


# --- directory updates, as an operator makes them -----------------------------------------


def current(audit: AuditClient) -> SignedDirectory:
    return SignedDirectory.from_bytes(audit.directory())


def next_draft(tmp: Path, audit: AuditClient, name: str) -> tuple[Path, SignedDirectory]:
    """A draft of the version after the gateway's current one (``directory next-version``)."""
    cur = current(audit)
    source, draft = tmp / f"{name}.current.pb", tmp / f"{name}.json"
    source.write_bytes(cur.to_bytes())
    assert cmd_directory.main(["directory", "next-version", "--from", str(source), "--out", str(draft)]) == 0
    return draft, cur


def sign(lab: Lab, draft: Path, out: Path, authorities: tuple[str, ...] = AUTHORITIES) -> bytes:
    assert lab.deployment is not None
    source = draft
    for authority in authorities:
        argv = ["directory", "sign", "--file", str(source), "--authority", authority]
        argv += ["--keys", str(lab.deployment.keys_dir(authority))]
        argv += ["--passphrase-file", str(lab.deployment.passphrase_file), "--out", str(out)]
        assert cmd_directory.main(argv) == 0
        source = out
    return out.read_bytes()


def office_versions(lab: Lab) -> dict[str, int]:
    versions = {}
    for office in OFFICES:
        with Client.from_lab(lab.root, office) as client:
            versions[office] = client.offices().directory_version
    return versions


def wait_version(lab: Lab, version: int) -> None:
    wait_for(
        lambda: set(office_versions(lab).values()) == {version}, what=f"every office on directory v{version}"
    )


def put_on_nats(lab: Lab, data: bytes) -> None:
    """Publish a directory straight onto NATS, bypassing the gateway's checks.

    Only the gateway's NATS identity may write the directory subject, so this is
    what a compromised gateway host (or a NATS misconfiguration) could do.
    """
    assert lab.deployment is not None
    args = lab.nats_connect_args(lab.deployment.inventory.gateway.id)

    async def go() -> None:
        transport = await connect(lab.nats_url, "test-directory-injector", **args)
        try:
            await transport.put_directory(data)
        finally:
            await transport.close()

    asyncio.run(go())


def refusals(lab: Lab, office: str) -> list[str]:
    """The office's ``directory_refused`` log lines."""
    text = lab.nodes[office].log.read_text(errors="replace")
    return [line for line in text.splitlines() if "directory_refused" in line]


def gateway_refusals(lab: Lab) -> list[str]:
    text = lab.gateway.log.read_text(errors="replace")
    return [line for line in text.splitlines() if "rpc_refused" in line and "PublishDirectory" in line]


# --- messages --------------------------------------------------------------------------------


def receive(client: Client, wanted: set[str], wait_s: float = 20.0) -> dict[str, Delivery]:
    got: dict[str, Delivery] = {}
    deadline = time.monotonic() + wait_s
    while set(got) != wanted and time.monotonic() < deadline:
        for d in client.subscribe(wait_s=1.0):
            if d.message_id in wanted:
                got[d.message_id] = d
                client.ack(d.message_id)
            if set(got) == wanted:
                break
    assert set(got) == wanted, f"missing deliveries: {wanted - set(got)}"
    return got


def rejection(client: Client, message_id: str) -> str:
    def rejected() -> bool:
        try:
            return client.status(message_id).rejected
        except RemoteError:
            return False

    wait_for(rejected, what=f"rejection of {message_id}")
    reason = client.status(message_id).recipients[0].rejection
    assert reason is not None
    return reason.label


def flows(lab: Lab, sender: str, recipient: str) -> None:
    with Client.from_lab(lab.root, sender) as s, Client.from_lab(lab.root, recipient) as r:
        sent = s.send_case_message([recipient], case_id="CASE-LIFECYCLE", text=f"{sender} to {recipient}")
        receive(r, {sent.message_id})


def seal_with(
    ident: OfficeIdentity, keys: OfficeIdentity, recipients: list[str], d: Directory, created_ms: int
) -> Envelope:
    return seal(
        CaseMessage(case_id="INJECTED", text="sealed with chosen keys"),
        sender=ident.owner_id,
        sender_keys=keys.signing_keys(Suite.CLASSIC),
        recipients=recipients,
        directory=d,
        suite=Suite.CLASSIC,
        now_ms=created_ms,
        ttl_s=3600,
    )


# --- tests -------------------------------------------------------------------------------------


def test_revocation_end_to_end(lab: Lab, audit: AuditClient, tmp_path: Path) -> None:
    draft, before = next_draft(tmp_path, audit, "revoke")
    office = before.directory.office(TJ)
    assert office is not None
    key = next(k for k in office.keys if k.algorithm.name == "ED25519" and k.valid_at(now_ms()))
    ed25519 = key.key_id
    time.sleep(0.1)
    revoked_at = now_ms()
    argv = ["directory", "set-key-status", "--file", str(draft), "--key-id", ed25519]
    assert cmd_directory.main([*argv, "--status", "revoked", "--at-ms", str(revoked_at)]) == 0
    version = audit.publish_directory(sign(lab, draft, tmp_path / "revoke.pb"))
    assert version == before.version + 1
    wait_version(lab, version)

    # Created after T with the revoked key (as a stolen key would be used): refused and audited.
    after = sealed(lab, TJ, [RU], now_ms=revoked_at + 1_000, in_directory=before.directory)
    message_id = after.header.context.message_id
    inject(lab, TJ, after, message_id)
    with Client.from_lab(lab.root, TJ) as tj:
        assert rejection(tj, message_id) == "key-revoked"
        # The office itself cannot send any more: its only Ed25519 key is revoked.
        with pytest.raises(RemoteError):
            tj.send_case_message([RU], case_id="CASE-LIFECYCLE", text="after revocation")
    records, _ = audit.query(AuditFilter(message_id=message_id))
    assert [(r.record.verdict, r.record.reason and r.record.reason.label) for r in records] == [
        (Verdict.REJECTED, "key-revoked")
    ]

    # Dated before T but sent after it: refused too, the key is judged no earlier than
    # JetStream stored the frame (test_statement_binding.py attacks this on its own).
    # (No earlier than the key itself: a fresh lab's keys may be younger than five seconds.)
    created = max(revoked_at - 5_000, key.not_before_ms + 1)
    earlier = sealed(lab, TJ, [RU], now_ms=created, in_directory=before.directory)
    inject(lab, TJ, earlier, earlier.header.context.message_id)
    with Client.from_lab(lab.root, TJ) as tj:
        assert rejection(tj, earlier.header.context.message_id) == "key-revoked"

    # The other offices still exchange messages.
    flows(lab, RU, MIG)
    flows(lab, MIG, RU)


def test_under_signed_and_rolled_back_directories_are_refused_everywhere(
    lab: Lab, audit: AuditClient, tmp_path: Path
) -> None:
    # A valid update first, so that the current version has an older, validly signed one.
    draft, stale = next_draft(tmp_path, audit, "valid")
    good = audit.publish_directory(sign(lab, draft, tmp_path / "valid.pb"))
    wait_version(lab, good)
    draft, _ = next_draft(tmp_path, audit, "one")
    one_authority = sign(lab, draft, tmp_path / "one.pb", AUTHORITIES[:1])
    # The older version, still validly signed by both. Re-adding one signature reorders the
    # entries, so these bytes differ from the ones published before: JetStream's duplicate
    # window would otherwise drop the replay before any office saw it.
    (tmp_path / "stale.pb").write_bytes(stale.to_bytes())
    older = sign(lab, tmp_path / "stale.pb", tmp_path / "stale.pb", AUTHORITIES[:1])
    assert older != stale.to_bytes()
    cases = [
        ("one-authority", one_authority, "valid signatures from 1 of the 2"),
        ("lower-version", older, "does not move forward"),
    ]
    for name, data, why in cases:
        # The gateway refuses it on its DirectoryService, and logs the refusal.
        logged = len(gateway_refusals(lab))
        with pytest.raises(RemoteError) as info:
            audit.publish_directory(data)
        assert info.value.status == "FAILED_PRECONDITION", name
        assert why in info.value.detail, name
        wait_for(
            lambda n=logged: len(gateway_refusals(lab)) > n, what=f"the gateway logging the {name} refusal"
        )  # type: ignore[misc]
        # Straight onto NATS (a compromised publisher): every office refuses and logs it.
        counts = {office: len(refusals(lab, office)) for office in OFFICES}
        put_on_nats(lab, data)
        for office in OFFICES:
            wait_for(
                lambda o=office, before=counts[office]: len(refusals(lab, o)) > before,  # type: ignore[misc]
                what=f"{office} refusing the {name} directory",
            )
            assert why in refusals(lab, office)[-1], (name, office)
        assert office_versions(lab) == dict.fromkeys(OFFICES, good), name
    assert current(audit).version == good


def test_rotation_end_to_end(lab: Lab, audit: AuditClient, tmp_path: Path) -> None:
    assert lab.deployment is not None
    old = identity(lab, RU)
    public = tmp_path / "ru.rotated.json"
    argv = ["keys", "rotate", "--dir", str(lab.deployment.keys_dir(RU))]
    argv += ["--passphrase-file", str(lab.deployment.passphrase_file), "--overlap-days", "7"]
    assert cmd_keys.main([*argv, "--out", str(public)]) == 0
    new = identity(lab, RU)
    new_ed25519 = new.signing_key_ids(Suite.CLASSIC)[0]
    assert new_ed25519 not in {k.key_id for k in old.keys}

    draft, before = next_draft(tmp_path, audit, "rotate")
    argv = ["directory", "rotate-key", "--file", str(draft), "--owner", RU, "--public", str(public)]
    assert cmd_directory.main([*argv, "--overlap-days", "7"]) == 0
    version = audit.publish_directory(sign(lab, draft, tmp_path / "rotate.pb"))
    wait_version(lab, version)

    # The node loads its rotated keystore on restart.
    lab.nodes[RU].stop()
    lab.start_node(RU)

    # New messages are signed with the new key (the receipts show the key ids)...
    with Client.from_lab(lab.root, RU) as ru, Client.from_lab(lab.root, MIG) as mig:
        sent = ru.send_case_message([MIG], case_id="CASE-ROTATION", text="after rotation")
        receive(mig, {sent.message_id})
        accepted = ru.status(sent.message_id).statements[0]
        assert [s.key_id for s in accepted.signatures] == [new_ed25519]
        # ...and mail to the office is wrapped to its new encryption key, which it opens.
        reply = mig.send_case_message([RU], case_id="CASE-ROTATION", text="reply")
        receive(ru, {reply.message_id})
    assert office_versions(lab) == dict.fromkeys(OFFICES, version)

    # Within the overlap, an envelope signed with the OLD key is still accepted and delivered.
    by_old_key = seal_with(old, old, [MIG], before.directory, now_ms())
    message_id = by_old_key.header.context.message_id
    assert by_old_key.header.context.signing_key_ids == old.signing_key_ids(Suite.CLASSIC)
    inject(lab, RU, by_old_key, message_id)
    with Client.from_lab(lab.root, MIG) as mig:
        receive(mig, {message_id})
    # Mail sealed to the office's OLD encryption key (a sender on the previous directory) still opens.
    in_flight = sealed(lab, MIG, [RU], in_directory=before.directory)
    old_kem = old.encryption_key(Suite.CLASSIC).key_id
    assert in_flight.header.wrapped_for(RU).key_id == old_kem  # type: ignore[union-attr]
    inject(lab, MIG, in_flight, in_flight.header.context.message_id)
    with Client.from_lab(lab.root, RU) as ru:
        receive(ru, {in_flight.header.context.message_id})
    records, _ = audit.query(AuditFilter(message_id=message_id))
    assert records[-1].record.verdict is Verdict.ACCEPTED
