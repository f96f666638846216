"""The checked-in generated protobuf code matches protos/ (run `make protos` when it does not)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from exchange._pb.liaison.v1 import exchange_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]


def test_generated_code_is_fresh() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_generated_code_imports_from_its_package() -> None:
    assert exchange_pb2_grpc.ExchangeServiceStub.__module__ == "exchange._pb.liaison.v1.exchange_pb2_grpc"
