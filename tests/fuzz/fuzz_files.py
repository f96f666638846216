"""atheris harness: node configs, keystores and directory drafts read from disk.

The first input byte picks the loader (office config, gateway config,
keystore, draft); the rest is written to the file it reads. Each may raise
only its documented error (ConfigError, KeystoreError, DirectoryInvalidError).
scrypt is bounded to cheap parameters for the run so that throughput stays
useful. Run: ``python tests/fuzz/fuzz_files.py -max_total_time=60``.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from pathlib import Path
from unittest import mock

from _harness import instrumented, run

with instrumented():
    from exchange import errors, primitives
    from exchange.office.config import load_office_config
    from gateway.config import load_gateway_config
    from keys import identity, keystore
    from keys.directory_file import directory_to_json, load_draft
    from tests.fuzz.corpus import NOW_MS, build_corpus
    from tests.unit.test_fuzz_parsers import GATEWAY_TOML, OFFICE_TOML, PASSPHRASE

CORPUS = build_corpus()
WORK = Path(tempfile.mkdtemp(prefix="liaison-fuzz-files-"))
(WORK / "ks").mkdir()


def _office(path: Path) -> None:
    load_office_config(path)


def _gateway(path: Path) -> None:
    load_gateway_config(path)


def _keystore(path: Path) -> None:
    keystore.open_keystore(path.parent, PASSPHRASE)


def _draft(path: Path) -> None:
    load_draft(path)


LOADERS = (
    (_office, WORK / "office.toml", errors.ConfigError),
    (_gateway, WORK / "gateway.toml", errors.ConfigError),
    (_keystore, WORK / "ks" / keystore.KEYSTORE_FILE, errors.KeystoreError),
    (_draft, WORK / "draft.json", (errors.DirectoryInvalidError, errors.ConfigError)),
)


def test_one_input(data: bytes) -> None:
    if not data:
        return
    load, path, documented = LOADERS[data[0] % len(LOADERS)]
    path.write_bytes(data[1:])
    with contextlib.suppress(documented):
        load(path)


def _keystore_seed() -> bytes:
    with mock.patch.object(primitives, "_PASS_LOG2_N", 10):
        made = keystore.create(WORK / "seed", identity.generate("ru-mvd-dushanbe", NOW_MS), PASSPHRASE)
    return made.read_bytes()


if __name__ == "__main__":
    seeds = [
        b"\x00" + OFFICE_TOML.encode(),
        b"\x01" + GATEWAY_TOML.encode(),
        b"\x02" + _keystore_seed(),
        b"\x03" + json.dumps(directory_to_json(CORPUS.trusted)).encode(),
    ]
    with (
        mock.patch.object(primitives, "_PASS_MAX_LOG2_N", 11),
        mock.patch.object(primitives, "_PASS_MAX_WORK", 1 << 14),
    ):
        run(test_one_input, seeds)
