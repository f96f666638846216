"""Regenerate exchange/_pb from protos/ (grpcio-tools + mypy-protobuf stubs).

Generated imports mirror the proto path (``liaison.v1.x_pb2``); they are
rewritten to the package they live in (``exchange._pb.liaison.v1.x_pb2``) so
the generated code needs no ``sys.path`` trick. ``--check`` regenerates into
a temporary folder and exits 1 when the checked-in code differs.

The committed image of the API (protos/liaison.v1.binpb, checked by
``make protos-check``) is not rewritten here: ``make protos-image`` records a
deliberate contract change (docs/adr/0007-wire-contract.md).
"""

from __future__ import annotations

import argparse
import filecmp
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
OUT = ROOT / "exchange" / "_pb"
_BIN = Path(sys.executable).parent
_IMPORT = re.compile(r"^from liaison\.v1 import", re.MULTILINE)
_IMPORT_DOTTED = re.compile(r"^import liaison\.v1\.", re.MULTILINE)


def generate(out: Path) -> None:
    sources = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    cmd = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"-I{PROTOS}",
        f"--plugin=protoc-gen-mypy={_BIN / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={_BIN / 'protoc-gen-mypy_grpc'}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        *sources,
    ]
    subprocess.run(cmd, check=True, cwd=PROTOS)
    for path in out.rglob("*.py*"):
        text = path.read_text()
        text = _IMPORT.sub("from exchange._pb.liaison.v1 import", text)
        text = _IMPORT_DOTTED.sub("import exchange._pb.liaison.v1.", text)
        text = text.replace("liaison.v1.", "exchange._pb.liaison.v1.") if path.suffix == ".pyi" else text
        path.write_text(text)
    for pkg in (out, out / "liaison", out / "liaison" / "v1"):
        init = pkg / "__init__.py"
        if not init.exists():
            init.write_text('"""Generated protobuf code; regenerate with `make protos`."""\n')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail when the checked-in code is stale")
    args = parser.parse_args()
    if not args.check:
        shutil.rmtree(OUT / "liaison", ignore_errors=True)
        OUT.mkdir(parents=True, exist_ok=True)
        generate(OUT)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        generate(fresh)
        stale = _diff(fresh, OUT)
    if stale:
        print("generated code is stale, run `make protos`: " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


def _diff(fresh: Path, current: Path) -> list[str]:
    names = {p.relative_to(fresh) for p in fresh.rglob("*") if p.is_file()}
    names |= {
        p.relative_to(current) for p in current.rglob("*") if p.is_file() and "__pycache__" not in p.parts
    }
    return sorted(
        str(n)
        for n in names
        if not (fresh / n).is_file()
        or not (current / n).is_file()
        or not filecmp.cmp(fresh / n, current / n, shallow=False)
    )


if __name__ == "__main__":
    raise SystemExit(main())
