"""Directory updates survive restarts (issue 11, section 4), through real processes.

One lab (real nats-server, gateway and office processes). A directory update
v(N+1) revokes an office's key and adds a new office; then the gateway is
restarted the routine way (SIGTERM, start again) and an office is started
without a stored copy of any directory. Every node must go on judging by
v(N+1): the revoked key stays refused, the new office stays known, the fresh
office adopts v(N+1) from the directory stream, and the nodes export the
version and its age.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exchange.client.sdk import Client
from exchange.core.clock import now_ms
from exchange.core.codec.envelope import encode_frame
from exchange.core.directory import SignedDirectory
from exchange.core.model import CaseMessage, Suite
from exchange.core.seal import seal
from exchange.core.wire import DUPLICATE_WINDOW_S, out_subject
from exchange.nats.transport import connect
from gateway.audit.record import Verdict
from gateway.client import AuditClient, AuditFilter
from keys.keystore import open_keystore, passphrase_from
from liaison.commands import directory as cmd_directory
from liaison.commands import keys as cmd_keys
from liaison.lab.lab import Lab
from tests.integration.labutil import INVENTORY, inject, sealed, wait_for

pytestmark = pytest.mark.slow

RU, TJ, MIG = "ru-mvd-dushanbe", "tj-mvd-moscow", "tj-migration-moscow"
NEW = "tj-labour-moscow"
AUTHORITIES = ("ru-embassy-dushanbe", "tj-embassy-moscow")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with Lab(tmp_path_factory.mktemp("lab"), inventory=INVENTORY) as lab:
        lab.started_at = time.monotonic()  # type: ignore[attr-defined]
        yield lab


def _sign(lab: Lab, draft: Path, out: Path) -> bytes:
    assert lab.deployment is not None
    source = draft
    for authority in AUTHORITIES:
        argv = ["directory", "sign", "--file", str(source), "--authority", authority]
        argv += ["--keys", str(lab.deployment.keys_dir(authority))]
        argv += ["--passphrase-file", str(lab.deployment.passphrase_file), "--out", str(out)]
        assert cmd_directory.main(argv) == 0
        source = out
    return out.read_bytes()


def _office_version(lab: Lab, office: str) -> int:
    with Client.from_lab(lab.root, office) as client:
        return client.offices().directory_version


def _inject_as_gateway(lab: Lab, office: str, data: bytes, msg_id: str) -> None:
    """Publish on ``office``'s out subject (an office the lab has no NATS identity for)."""
    assert lab.deployment is not None
    args = lab.nats_connect_args(lab.deployment.inventory.gateway.id)

    async def go() -> None:
        transport = await connect(lab.nats_url, "test-new-office", **args)
        try:
            await transport.publish(out_subject(office), data, msg_id, 1)
        finally:
            await transport.close()

    asyncio.run(go())


def _verdicts(audit: AuditClient, message_id: str) -> list[tuple[Verdict, str | None]]:
    records, _ = audit.query(AuditFilter(message_id=message_id))
    return [(r.record.verdict, r.record.reason and r.record.reason.label) for r in records]


def _metrics(lab: Lab, name: str) -> dict[str, float]:
    doc = json.loads((lab.root / "lab.json").read_text())
    entry = doc["gateway"] if name == "gateway" else next(o for o in doc["offices"] if o["id"] == name)
    with urllib.request.urlopen(entry["metrics"], timeout=5) as reply:
        text = reply.read().decode()
    return {s.name: float(s.value) for f in text_string_to_metric_families(text) for s in f.samples}


def test_directory_update_survives_gateway_restart(lab: Lab, tmp_path: Path) -> None:
    """v(N+1) revokes a key and adds an office; after a gateway restart all of it still holds.

    Failed before the fix: after the restart the gateway was back on the pinned vN
    (``GetDirectory`` answered vN), it had republished vN into the directory stream,
    the envelope signed with the revoked key was ACCEPTED, the frame of the new
    office was REJECTED as ``unknown-sender``, and (the restart coming after
    JetStream's two-minute duplicate window, as routine restarts do) an office
    started without a stored directory stayed on vN; no node exported the age.
    """
    assert lab.deployment is not None
    dep = lab.deployment
    passphrase = dep.passphrase_file
    with AuditClient(lab.gateway.grpc, tls=lab.client_tls(AUTHORITIES[0])) as audit:
        before = SignedDirectory.from_bytes(audit.directory())
    source, draft = tmp_path / "current.pb", tmp_path / "next.json"
    source.write_bytes(before.to_bytes())
    assert cmd_directory.main(["directory", "next-version", "--from", str(source), "--out", str(draft)]) == 0

    # v(N+1), 1: revoke TJ's Ed25519 key from now on.
    office = before.directory.office(TJ)
    assert office is not None
    ed25519 = next(k for k in office.keys if k.algorithm.name == "ED25519" and k.valid_at(now_ms()))
    revoked_at = now_ms()
    argv = ["directory", "set-key-status", "--file", str(draft), "--key-id", ed25519.key_id]
    assert cmd_directory.main([*argv, "--status", "revoked", "--at-ms", str(revoked_at)]) == 0
    # v(N+1), 2: a new office that may send case messages to RU.
    keys_dir, public = tmp_path / "new-keys", tmp_path / "new.public.json"
    init = ["keys", "init", "--office", NEW, "--dir", str(keys_dir), "--passphrase-file", str(passphrase)]
    assert cmd_keys.main(init) == 0
    assert cmd_keys.main(["keys", "export-public", "--dir", str(keys_dir), "--out", str(public)]) == 0
    add = ["directory", "add-office", "--file", str(draft), "--id", NEW, "--country", "TJ"]
    add += ["--agency", "labour", "--city", "Moscow", "--name", "Labour office", "--public", str(public)]
    assert cmd_directory.main(add) == 0
    policy = ["directory", "set-policy", "--file", str(draft), "--sender", NEW]
    assert cmd_directory.main([*policy, "--kinds", "case-message", "--recipients", RU]) == 0
    signed = _sign(lab, draft, tmp_path / "next.pb")
    with AuditClient(lab.gateway.grpc, tls=lab.client_tls(AUTHORITIES[0])) as audit:
        version = audit.publish_directory(signed)
    assert version == before.version + 1
    wait_for(lambda: _office_version(lab, RU) == version, what=f"{RU} on v{version}")

    # A routine restart comes later than JetStream's duplicate window (which would hide a
    # republished vN as a duplicate of the first start's publish): wait it out, bounded.
    started: float = lab.started_at  # type: ignore[attr-defined]
    time.sleep(max(0.0, started + DUPLICATE_WINDOW_S + 2 - time.monotonic()))
    # A routine restart of the gateway, and MIG restarted with no stored directory at all.
    lab.nodes[MIG].stop()
    for stale in (lab.root / "nodes" / MIG).glob("office.db*"):
        stale.unlink()
    lab.gateway.stop()
    lab.start_node("gateway")
    lab.start_node(MIG)

    with AuditClient(lab.gateway.grpc, tls=lab.client_tls(AUTHORITIES[0])) as audit:
        assert SignedDirectory.from_bytes(audit.directory()).version == version

        # The revoked key is still refused (a stolen key, used after T).
        stolen = sealed(lab, TJ, [RU], now_ms=revoked_at + 1_000, in_directory=before.directory)
        stolen_id = stolen.header.context.message_id
        inject(lab, TJ, stolen, stolen_id)
        wait_for(lambda: bool(_verdicts(audit, stolen_id)), what="the stolen-key envelope audited")
        assert _verdicts(audit, stolen_id) == [(Verdict.REJECTED, "key-revoked")]

        # The new office is still known: its envelope is accepted.
        current = SignedDirectory.from_bytes(signed).directory
        new_keys = open_keystore(keys_dir, passphrase_from(passphrase))
        envelope = seal(
            CaseMessage(case_id="NEW-OFFICE", text="from the new office"),
            sender=NEW,
            sender_keys=new_keys.signing_keys(Suite.CLASSIC),
            recipients=[RU],
            directory=current,
            suite=Suite.CLASSIC,
            now_ms=now_ms(),
            ttl_s=3600,
            case_id="NEW-OFFICE",
        )
        new_id = envelope.header.context.message_id
        _inject_as_gateway(lab, NEW, encode_frame(envelope), new_id)
        wait_for(lambda: bool(_verdicts(audit, new_id)), what="the new office's envelope audited")
        verdicts = _verdicts(audit, new_id)  # RU's DELIVERED receipt may be audited already
        assert (Verdict.ACCEPTED, None) in verdicts
        assert all(v is not Verdict.REJECTED for v, _ in verdicts)

    # The office that started with nothing stored adopted v(N+1) from the stream.
    wait_for(lambda: _office_version(lab, MIG) == version, what=f"{MIG} adopting v{version}")

    # Version and age are exported, so a node frozen on an old version shows.
    def exported(name: str) -> bool:
        m = _metrics(lab, name)
        return m.get("liaison_directory_version") == version and "liaison_directory_age_seconds" in m

    for name in ("gateway", MIG):
        wait_for(functools.partial(exported, name), what=f"{name} exporting v{version} and its age")
        # ...and the health log names it (a detail even while the node serves).
        health = [
            json.loads(line) for line in lab.nodes[name].log.read_text().splitlines() if "health_" in line
        ]
        assert any(h.get("directory_version") == version and "directory_age_s" in h for h in health)
        age = _metrics(lab, name)["liaison_directory_age_seconds"]
        issued = SignedDirectory.from_bytes(signed).directory.issued_ms
        assert 0 <= age <= (now_ms() - issued) / 1000 + 5
