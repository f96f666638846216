"""The witness reports a stall: the log grew and no newer head was co-signed for too long.

Issue 11, section 3. Before the fix a witness that failed at one record for
good (a record over the 64 KiB the readers accept) kept failing round after
round while ``liaison witness status`` exited 0. The runner (real keys, real
state file, the real ``liaison witness status``) runs against the in-memory
gateway of ``test_witness`` that fails to serve one record, as that gateway did.
"""

from __future__ import annotations

import contextlib
import io
import json
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest

from exchange.core.errors import RemoteError
from exchange.core.merkle import EMPTY_ROOT
from exchange.runtime.lifecycle import load_directory
from gateway.witness.metrics import WitnessMetrics
from gateway.witness.runner import Witness, load_state, load_witness_config
from keys.deployment import Deployment, create_deployment, load_inventory
from keys.keystore import open_keystore, passphrase_from
from liaison.cli import main
from liaison.serve.witness import open_witness_key, save_state
from tests.integration.labutil import INVENTORY
from tests.integration.test_witness import GATEWAY, WITNESS, FakeGateway

STALL_AFTER_S = 0.3


class UnreadableRecordGateway(FakeGateway):
    """Serves every record except one, which fails as the 64 KiB decode limit made it fail."""

    unreadable: int | None = None

    def record(self, index: int) -> Any:
        if index == self.unreadable:
            raise RemoteError("RESOURCE_EXHAUSTED", "audit record of 65650 bytes exceeds 65536")
        return super().record(index)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Deployment:
    root = tmp_path_factory.mktemp("stall-deployment")
    return create_deployment(
        load_inventory(INVENTORY), root, b"stall-test-passphrase", int(time.time() * 1000)
    )


def _config(tmp_path: Path, d: Deployment) -> Path:
    config = tmp_path / "witness.toml"
    config.write_text(
        f'[witness]\nid = "{WITNESS}"\nstate = "witness.json"\nstall_after_s = {STALL_AFTER_S}\n'
        f'pin = "0:{EMPTY_ROOT.hex()}"\n'  # the fake log starts empty, and this witness saw it so
        "max_age_s = 1e12\n\n"  # the fake gateway's clock starts at 1970 + 1 s
        f'[keys]\ndir = "{d.keys_dir(WITNESS)}"\npassphrase_file = "{d.passphrase_file}"\n\n'
        '[gateway]\nendpoint = "unused:0"\n\n'
        f'[directory]\nfile = "{d.directory_file}"\n'
    )
    return config


def _status(config: Path) -> tuple[int, dict[str, Any]]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["witness", "status", "--config", str(config), "--json"])
    return code, json.loads(out.getvalue())


def test_status_fails_when_the_witness_stalls_while_the_log_grows(
    deployment: Deployment, tmp_path: Path
) -> None:
    """Failed before the fix: status exited 0 (no alarm) although nothing new was co-signed."""
    config = _config(tmp_path, deployment)
    cfg = load_witness_config(config)
    assert cfg.stall_after_s == STALL_AFTER_S
    directory = load_directory(cfg.directory)
    gateway_identity = open_keystore(
        deployment.keys_dir(GATEWAY), passphrase_from(deployment.passphrase_file)
    )
    fake = UnreadableRecordGateway(gateway_identity, directory, deployment.directory_file.read_bytes())
    metrics = WitnessMetrics(WITNESS)
    witness = Witness(
        cfg,
        fake,  # type: ignore[arg-type]
        directory,
        open_witness_key(cfg, directory),
        save_state=save_state,
        metrics=metrics,
    )
    fake.append(3)
    witness.round()  # co-signs size 3
    assert _status(config)[0] == 0
    fake.unreadable = 4
    fake.append(3)
    with pytest.raises(RemoteError, match="RESOURCE_EXHAUSTED"):
        witness.round()
    code, doc = _status(config)
    assert code == 0, doc  # behind, but not for longer than stall_after_s yet
    assert doc["behind"]["size"] == 6
    time.sleep(STALL_AFTER_S + 0.2)
    with pytest.raises(RemoteError):
        witness.round()  # still failing at record 4
    code, doc = _status(config)
    assert code == 1
    assert doc["alarm"] is None
    assert doc["stalled"]["log_size_seen"] == 6
    assert doc["stalled"]["stall_after_s"] == STALL_AFTER_S
    assert b"liaison_witness_stalled 1.0" in generate_latest(metrics.registry)
    # The record becomes readable: the witness catches up, co-signs, and the stall ends.
    fake.unreadable = None
    witness.round()
    code, doc = _status(config)
    assert code == 0, doc
    assert doc["stalled"] is None
    assert load_state(cfg.state, WITNESS).last.size == 6  # type: ignore[union-attr]
    assert b"liaison_witness_stalled 0.0" in generate_latest(metrics.registry)
