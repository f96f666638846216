"""The wire contract (protos/) passes buf's STANDARD lint and changes only deliberately.

``buf breaking`` compares protos/ with the committed image of the API
(protos/liaison.v1.binpb); the image itself must be what protos/ builds, so a
change to the contract, breaking or not, fails here until ``make protos-image``
records it (docs/adr/0007-wire-contract.md).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
IMAGE = ROOT / "protos" / "liaison.v1.binpb"
BUF = Path(sys.executable).parent / "buf"  # the dev extra buf-bin installs it beside python


def _buf(*args: str) -> subprocess.CompletedProcess[str]:
    assert BUF.is_file(), f"{BUF} missing: install the dev extras (buf-bin)"
    return subprocess.run(
        [str(BUF), *args], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )


def test_protos_pass_buf_lint() -> None:
    result = _buf("lint", "protos")
    assert result.returncode == 0, result.stdout + result.stderr


def test_protos_break_nothing_against_the_committed_image() -> None:
    result = _buf("breaking", "protos", "--against", str(IMAGE.relative_to(ROOT)))
    assert result.returncode == 0, result.stdout + result.stderr


def test_committed_image_is_what_protos_build(tmp_path: Path) -> None:
    fresh = tmp_path / "fresh.binpb"
    result = _buf("build", "protos", "-o", str(fresh))
    assert result.returncode == 0, result.stdout + result.stderr
    assert fresh.read_bytes() == IMAGE.read_bytes(), "protos/ changed: `make protos-image` once deliberate"
