"""The gateway's audit store fills up: it stops accepting, says why, and resumes when the disk is back.

The gateway's SQLite file is moved onto a tiny tmpfs (needs root to mount;
skipped with that reason otherwise). Traffic fills it; the gateway keeps the
frames in JetStream (nothing acknowledged that was not audited), reports
NOT_SERVING and logs the store failure. The tmpfs is then grown: every
message is delivered exactly once and audited exactly once.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from exchange.client.sdk import Client
from gateway.audit.record import Verdict
from gateway.client import AuditClient, AuditFilter
from liaison.lab.lab import Lab
from tests.integration.labutil import INVENTORY, wait_for

RU, TJ = "ru-mvd-dushanbe", "tj-mvd-moscow"
SMALL, LARGE = "160k", "64m"


def _mount(path: Path, size: str, *, remount: bool = False) -> None:
    options = f"remount,size={size}" if remount else f"size={size}"
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], check=True, capture_output=True
    )


@pytest.fixture
def lab_on_small_disk(tmp_path: Path) -> Iterator[tuple[Lab, Path]]:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs for the audit store needs root")
    disk = tmp_path / "gateway-disk"
    disk.mkdir()
    try:
        _mount(disk, SMALL)
    except subprocess.CalledProcessError as e:
        pytest.skip(f"cannot mount a tmpfs here: {e.stderr.decode(errors='replace').strip()}")
    lab = Lab(tmp_path / "lab", inventory=INVENTORY)
    try:
        lab.start()
        lab.gateway.stop()
        config = lab.gateway.config
        config.write_text(config.read_text().replace('store = "audit.db"', f'store = "{disk / "audit.db"}"'))
        for f in config.parent.glob("audit.db*"):
            shutil.move(f, disk / f.name)
        lab.start_node("gateway")
        yield lab, disk
    finally:
        lab.stop()
        subprocess.run(["umount", "-l", str(disk)], check=False, capture_output=True)


def _serving(lab: Lab) -> bool:
    tls = lab.client_tls("operator")
    creds = grpc.ssl_channel_credentials(tls.ca.read_bytes(), tls.key.read_bytes(), tls.cert.read_bytes())
    with grpc.secure_channel(lab.gateway.grpc, creds) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=3
        )
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


@pytest.mark.slow
def test_full_audit_disk_stops_accepting_then_resumes(lab_on_small_disk: tuple[Lab, Path]) -> None:
    lab, disk = lab_on_small_disk
    sent: list[str] = []
    with Client.from_lab(lab.root, RU) as ru:
        for i in range(400):
            sent.append(
                ru.send_case_message([TJ], case_id="DISK", text=f"message {i} " + "x" * 200).message_id
            )
    wait_for(lambda: not _serving(lab), timeout=60, what="the gateway to report NOT_SERVING on a full store")
    log = lab.gateway.log.read_text(errors="replace")
    assert "audit_store_failed" in log
    assert "full" in log.lower()

    delivered: list[str] = []
    with Client.from_lab(lab.root, TJ) as tj:
        delivered += [d.message_id for d in tj.subscribe(wait_s=2.0)]
        assert len(delivered) < len(sent), "a full audit store must stop the gateway accepting"
        _mount(disk, LARGE, remount=True)  # the disk is back
        deadline = time.monotonic() + 120
        while len(set(delivered)) < len(sent) and time.monotonic() < deadline:
            delivered += [d.message_id for d in tj.subscribe(0, wait_s=2.0) if d.message_id not in delivered]
    assert sorted(set(delivered)) == sorted(sent), f"{len(set(delivered))} of {len(sent)} delivered"
    assert len(delivered) == len(set(delivered)), "no duplicates towards the agency system"
    wait_for(lambda: _serving(lab), timeout=30, what="the gateway to serve again")
    with AuditClient.from_lab(lab.root) as audit:
        accepted = [
            r
            for r in audit.all_records(AuditFilter(verdict=Verdict.ACCEPTED))
            if r.record.message_id in set(sent)
        ]
    assert sorted(r.record.message_id for r in accepted) == sorted(sent), "each audited exactly once"
    print(f"\n[disk full] sent={len(sent)} delivered={len(set(delivered))} audited={len(accepted)}")
