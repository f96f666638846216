"""Encrypted keystore: file modes, passphrases, no plaintext key bytes on disk."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest

from exchange.core import identity, model, primitives
from exchange.core.errors import ConfigError, KeystoreError, WrongPassphraseError
from keys import keystore

NOW = 1_750_000_000_000
PASS = b"correct horse battery staple"


@pytest.fixture(scope="module")
def ident() -> identity.OfficeIdentity:
    return identity.generate("office-dushanbe", NOW, valid_days=30)


@pytest.fixture
def store(tmp_path: Path, ident: identity.OfficeIdentity) -> Path:
    directory = tmp_path / "keys"
    keystore.create(directory, ident, PASS)
    return directory


def test_identity_has_both_suites(ident: identity.OfficeIdentity) -> None:
    algorithms = {k.algorithm for k in ident.public_keys()}
    assert algorithms == set(model.Algorithm)
    assert [k.algorithm for k in ident.public_keys()] == [k.algorithm for k in ident.keys]
    assert all(
        k.not_before_ms == NOW and k.not_after_ms == NOW + 30 * 86_400_000 for k in ident.public_keys()
    )
    assert [k.algorithm for k in ident.signing_keys(model.Suite.CLASSIC)] == [model.Algorithm.ED25519]
    assert len(ident.signing_keys(model.Suite.HYBRID_PQ)) == 2
    assert {
        primitives.key_id(k.algorithm, primitives.public_bytes(k)) for k in ident.encryption_keys().values()
    } == set(ident.encryption_keys())
    assert "office-dushanbe" in repr(ident)


def test_modes_are_private(store: Path) -> None:
    assert stat.S_IMODE(store.stat().st_mode) == 0o700
    assert stat.S_IMODE((store / keystore.KEYSTORE_FILE).stat().st_mode) == 0o600
    assert [p.name for p in store.iterdir()] == [keystore.KEYSTORE_FILE]  # no temp files left


def test_round_trip(store: Path, ident: identity.OfficeIdentity) -> None:
    opened = keystore.open_keystore(store, PASS)
    assert opened.owner_id == ident.owner_id
    assert opened.public_keys() == ident.public_keys()
    assert [primitives.private_bytes(k.key) for k in opened.keys] == [
        primitives.private_bytes(k.key) for k in ident.keys
    ]


def test_no_plaintext_private_bytes_in_file(store: Path, ident: identity.OfficeIdentity) -> None:
    content = (store / keystore.KEYSTORE_FILE).read_bytes()
    for k in ident.keys:
        raw = primitives.private_bytes(k.key)
        for form in (raw, raw.hex().encode(), base64.b64encode(raw), base64.b64encode(raw[:24])):
            assert form not in content


@pytest.mark.parametrize("bad", [b"wrong", b"", PASS + b" "], ids=["other", "empty", "trailing-space"])
def test_wrong_passphrase(store: Path, bad: bytes) -> None:
    with pytest.raises(WrongPassphraseError) as info:
        keystore.open_keystore(store, bad)
    assert "\n" not in str(info.value)
    assert PASS.decode() not in str(info.value)


def test_refuses_overwrite(store: Path, ident: identity.OfficeIdentity) -> None:
    with pytest.raises(KeystoreError, match="exists"):
        keystore.create(store, ident, PASS)


def test_missing_keystore(tmp_path: Path) -> None:
    with pytest.raises(KeystoreError, match="no keystore"):
        keystore.open_keystore(tmp_path, PASS)


def test_tampered_metadata_detected(store: Path) -> None:
    path = store / keystore.KEYSTORE_FILE
    doc = json.loads(path.read_text())
    doc["keys"][0]["public"], doc["keys"][1]["public"] = doc["keys"][1]["public"], doc["keys"][0]["public"]
    path.write_text(json.dumps(doc))
    with pytest.raises(KeystoreError):
        keystore.open_keystore(store, PASS)


def test_read_public_needs_no_passphrase(store: Path, ident: identity.OfficeIdentity) -> None:
    owner, keys = keystore.read_public(store)
    assert owner == "office-dushanbe"
    assert keys == ident.public_keys()


def test_passphrase_from_file(tmp_path: Path) -> None:
    f = tmp_path / "pass"
    f.write_bytes(PASS + b"\n")
    assert keystore.passphrase_from(f, env={keystore.PASSPHRASE_ENV: "ignored"}) == PASS


def test_passphrase_from_env() -> None:
    assert keystore.passphrase_from(None, env={keystore.PASSPHRASE_ENV: "s3cret"}) == b"s3cret"


@pytest.mark.parametrize(
    ("content", "env"),
    [(None, {}), (None, {keystore.PASSPHRASE_ENV: ""}), (b"\n", {}), ("missing", {})],
    ids=["nothing", "empty-env", "empty-file", "missing-file"],
)
def test_passphrase_missing(tmp_path: Path, content: bytes | str | None, env: dict[str, str]) -> None:
    f: Path | None = None
    if isinstance(content, bytes):
        f = tmp_path / "pass"
        f.write_bytes(content)
    elif content == "missing":
        f = tmp_path / "nope"
    with pytest.raises(ConfigError):
        keystore.passphrase_from(f, env=env)
