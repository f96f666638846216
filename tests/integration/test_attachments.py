"""Large attachments end to end through a real lab: upload, send, download, tamper, refuse.

One lab (real nats-server with per-office permissions, gateway, three office
node processes, real gRPC with mutual TLS). Test data is generated while it
streams, so the test process never holds a whole attachment.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from exchange.client.sdk import Client
from exchange.core.attachments import CHUNK_BYTES
from exchange.core.errors import RemoteError
from exchange.core.wire import attach_subject
from exchange.nats.transport import connect
from liaison.lab.lab import Lab
from tests.integration.labutil import INVENTORY

RU, TJ, MIG = "ru-mvd-dushanbe", "tj-mvd-moscow", "tj-migration-moscow"
MIB = 1 << 20


class GeneratedFile:
    """A read-only binary file of ``size`` pseudo-random bytes, made as it is read."""

    def __init__(self, size: int, seed: int, name: str = "generated.bin") -> None:
        self.name = name
        self._left = size
        self._rng = random.Random(seed)
        self.sha256 = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        n = self._left if n < 0 else min(n, self._left)
        data = self._rng.randbytes(n)
        self._left -= n
        self.sha256.update(data)
        return data


def file_sha256(path: Path) -> bytes:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(MIB):
            h.update(block)
    return h.digest()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with Lab(tmp_path_factory.mktemp("lab"), inventory=INVENTORY) as lab:
        yield lab


@pytest.fixture(scope="module")
def clients(lab: Lab) -> Iterator[dict[str, Client]]:
    opened = {office: Client.from_lab(lab.root, office) for office in (RU, TJ, MIG)}
    yield opened
    for c in opened.values():
        c.close()


def _send_with(clients: dict[str, Client], size: int, seed: int, case_id: str) -> tuple[str, bytes]:
    """Upload a generated attachment at RU, send it to TJ, wait for TJ's delivery."""
    source = GeneratedFile(size, seed)
    ref = clients[RU].upload_attachment(source, media_type="application/octet-stream")
    assert ref.size == size
    assert ref.sha256 == source.sha256.digest()
    sent = clients[RU].send_case_message([TJ], case_id=case_id, text="file attached", attachments=[ref.id])
    for delivery in clients[TJ].subscribe(wait_s=30):
        if delivery.message_id == sent.message_id:
            [attachment] = delivery.body.attachments
            assert attachment.name == "generated.bin"
            assert attachment.external is not None
            assert attachment.external.size == size
            return sent.message_id, source.sha256.digest()
    raise AssertionError("the message with the attachment was not delivered")


@pytest.mark.slow
def test_a_50_mib_attachment_arrives_whole_and_verified(clients: dict[str, Client], tmp_path: Path) -> None:
    size = 50 * MIB + 12345  # not a multiple of the chunk size
    message_id, sha = _send_with(clients, size, seed=1, case_id="ATT-50")
    target = tmp_path / "received.bin"
    ref = clients[TJ].download_attachment(message_id, 0, to=target)
    assert (ref.size, ref.sha256) == (size, sha)
    assert target.stat().st_size == size
    assert file_sha256(target) == sha
    # The sender's office can fetch what it sent, too.
    clients[RU].download_attachment(message_id, 0, to=tmp_path / "own.bin")
    assert file_sha256(tmp_path / "own.bin") == sha


@pytest.mark.slow
def test_a_non_recipient_office_cannot_download(clients: dict[str, Client], tmp_path: Path) -> None:
    message_id, _ = _send_with(clients, 3 * MIB, seed=2, case_id="ATT-NR")
    with pytest.raises(RemoteError) as refused:
        clients[MIG].download_attachment(message_id, 0, to=tmp_path / "stolen.bin")
    assert refused.value.status == "NOT_FOUND"
    assert not (tmp_path / "stolen.bin").exists()
    assert not (tmp_path / "stolen.bin.part").exists()


@pytest.mark.slow
def test_a_replaced_chunk_is_detected_and_no_file_is_left(
    lab: Lab, clients: dict[str, Client], tmp_path: Path
) -> None:
    message_id, _ = _send_with(clients, 3 * MIB + 7, seed=3, case_id="ATT-TAMPER")
    # Which attachment: the recipient's delivery names it (id and owner, not the key).
    [entry] = [e for e in clients[TJ].case("ATT-TAMPER") if e.message_id == message_id]
    manifest = entry.body.attachments[0].external
    assert manifest is not None

    async def replace_chunk() -> None:
        # With the owner's own NATS identity (a compromised node, or a broken disk copy):
        # a newer message on the chunk's subject is what a direct get by subject returns.
        transport = await connect(lab.nats_url, "tamper", **lab.nats_connect_args(RU))
        try:
            forged = bytes(CHUNK_BYTES + 16)
            await transport.publish(attach_subject(RU, manifest.id, 1), forged, "forged-chunk-1", 1)
        finally:
            await transport.close()

    asyncio.run(replace_chunk())
    target = tmp_path / "tampered.bin"
    with pytest.raises(RemoteError) as refused:
        clients[TJ].download_attachment(message_id, 0, to=target)
    assert refused.value.status == "DATA_LOSS"
    assert "chunk 1 does not authenticate" in refused.value.detail
    assert not target.exists()
    assert not target.with_name("tampered.bin.part").exists()


def test_an_unknown_attachment_id_cannot_be_sent(clients: dict[str, Client]) -> None:
    with pytest.raises(RemoteError) as refused:
        clients[RU].send_case_message([TJ], case_id="ATT-X", text="nothing", attachments=["ab" * 16])
    assert refused.value.status == "NOT_FOUND"


@pytest.mark.slow
def test_cli_sends_and_downloads_an_attachment(lab: Lab, tmp_path: Path) -> None:
    source = tmp_path / "evidence.bin"
    with source.open("wb") as f:
        for block in range(3):
            f.write(bytes([block]) * MIB)
    liaison = [sys.executable, "-m", "liaison.cli"]
    common = ["--lab", str(lab.root), "--json"]
    sent = subprocess.run(
        [*liaison, "send", "case", *common, "--from", RU, "--to", TJ, "--case", "ATT-CLI",
         "--text", "see file", "--attach", str(source)],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    message_id = json.loads(sent.stdout)["message_id"]
    with Client.from_lab(lab.root, TJ) as tj:
        assert any(d.message_id == message_id for d in tj.subscribe(wait_s=30))
    out = tmp_path / "got.bin"
    got = subprocess.run(
        [*liaison, "download", message_id, *common, "--office", TJ, "--out", str(out)],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert json.loads(got.stdout)["size"] == 3 * MIB
    assert file_sha256(out) == file_sha256(source)
