"""Encrypted keystore: an identity's private keys on disk under a passphrase.

What it does: writes ``<dir>/keystore.json`` (mode 0600, directory 0700)
holding public metadata in the clear (owner, key ids, algorithms, public
keys, validity windows) and ONE ``passphrase_seal`` blob (scrypt +
ChaCha20-Poly1305) with all private keys; reads it back, checking that every
private key matches the public metadata next to it; ``update`` rewrites it
after a key rotation (never dropping a key). Also finds the passphrase
(``--passphrase-file`` or ``LIAISON_PASSPHRASE``).

What it does not: never writes an unencrypted private key, never puts a
passphrase or key bytes in an error message, and does not cache passphrases.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from exchange.core import model, primitives
from exchange.core.errors import CodecError, ConfigError, KeystoreError, map_exceptions
from exchange.core.identity import IdentityKey, OfficeIdentity

__all__ = [
    "KEYSTORE_FILE",
    "MAX_KEYSTORE_BYTES",
    "PASSPHRASE_ENV",
    "create",
    "exists",
    "open_keystore",
    "passphrase_from",
    "read_public",
    "update",
    "write_private_file",
]

KEYSTORE_FILE: Final = "keystore.json"
PASSPHRASE_ENV: Final = "LIAISON_PASSPHRASE"  # noqa: S105 (a variable name, not a secret)
MAX_KEYSTORE_BYTES: Final = 1024 * 1024
_FORMAT: Final = "liaison-keystore-v1"
_MAX_PASSPHRASE_BYTES: Final = 4096


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: object, what: str) -> bytes:
    if not isinstance(text, str):
        raise KeystoreError(f"keystore: {what} is not base64 text")
    try:
        return base64.b64decode(text, validate=True)
    except ValueError as e:
        raise KeystoreError(f"keystore: {what} is not valid base64") from e


def write_private_file(path: Path, data: bytes) -> None:
    """Atomically write ``data`` to ``path`` with mode 0600 (never world-readable, even briefly)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _private_dir(directory: Path) -> None:
    with map_exceptions({OSError: KeystoreError}, f"cannot create keystore directory {directory}"):
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(directory, 0o700)


def exists(directory: Path) -> bool:
    return (directory / KEYSTORE_FILE).exists()


def _encode(identity: OfficeIdentity, passphrase: bytes) -> bytes:
    secrets = {k.key_id: _b64(primitives.private_bytes(k.key)) for k in identity.keys}
    sealed = primitives.passphrase_seal(json.dumps(secrets).encode(), passphrase)
    doc = {
        "format": _FORMAT,
        "owner": identity.owner_id,
        "keys": [
            {
                "key_id": k.key_id,
                "algorithm": k.algorithm.name,
                "public": _b64(k.public),
                "not_before_ms": k.not_before_ms,
                "not_after_ms": k.not_after_ms,
            }
            for k in identity.keys
        ],
        "sealed": _b64(sealed),
    }
    return (json.dumps(doc, indent=2) + "\n").encode()


def create(directory: Path, identity: OfficeIdentity, passphrase: bytes) -> Path:
    """Write ``identity`` to ``directory/keystore.json``; refuse to overwrite one."""
    if not passphrase:
        raise ConfigError("an empty passphrase cannot protect a keystore")
    _private_dir(directory)
    path = directory / KEYSTORE_FILE
    if path.exists():
        raise KeystoreError(f"{path} exists already; refusing to overwrite keys")
    with map_exceptions({OSError: KeystoreError}, f"cannot write {path}"):
        write_private_file(path, _encode(identity, passphrase))
    return path


def update(directory: Path, identity: OfficeIdentity, passphrase: bytes) -> Path:
    """Replace the keystore with ``identity`` (key rotation), atomically; never drops a key.

    The passphrase must open the existing keystore, the owner must stay the
    same and every key it holds must still be in ``identity``: losing an old
    encryption key would make mail in flight to it unreadable.
    """
    old = open_keystore(directory, passphrase)  # WrongPassphraseError before anything changes
    if old.owner_id != identity.owner_id:
        raise KeystoreError(f"keystore belongs to {old.owner_id!r}, not {identity.owner_id!r}")
    lost = sorted({k.key_id for k in old.keys} - {k.key_id for k in identity.keys})
    if lost:
        raise KeystoreError(f"refusing to drop key(s) {', '.join(lost)} from the keystore")
    path = directory / KEYSTORE_FILE
    with map_exceptions({OSError: KeystoreError}, f"cannot write {path}"):
        write_private_file(path, _encode(identity, passphrase))
    return path


def _load_doc(directory: Path) -> dict[str, Any]:
    path = directory / KEYSTORE_FILE
    try:
        size = path.stat().st_size
        if size > MAX_KEYSTORE_BYTES:
            raise KeystoreError(f"{path} is {size} bytes, limit {MAX_KEYSTORE_BYTES}")
        doc = json.loads(path.read_bytes())
    except FileNotFoundError as e:
        raise KeystoreError(f"no keystore at {path} (run `liaison keys init`)") from e
    except OSError as e:
        raise KeystoreError(f"cannot read {path}: {e.strerror}") from e
    except (ValueError, RecursionError) as e:  # RecursionError: nested too deeply
        raise KeystoreError(f"{path} is not valid JSON") from e
    if not isinstance(doc, dict) or doc.get("format") != _FORMAT:
        raise KeystoreError(f"{path} is not a {_FORMAT} keystore")
    return doc


def read_public(directory: Path) -> tuple[str, tuple[model.PublicKey, ...]]:
    """Owner id and public keys from the clear metadata; needs no passphrase."""
    doc = _load_doc(directory)
    try:
        keys = tuple(
            model.PublicKey(
                key_id=str(k["key_id"]),
                algorithm=model.Algorithm[k["algorithm"]],
                public=_unb64(k["public"], "public key"),
                not_before_ms=int(k["not_before_ms"]),
                not_after_ms=int(k["not_after_ms"]),
            )
            for k in doc["keys"]
        )
        return str(doc["owner"]), keys
    except (KeyError, TypeError, ValueError, OverflowError) as e:  # OverflowError: int(Infinity)
        raise KeystoreError("keystore metadata is malformed") from e


def open_keystore(directory: Path, passphrase: bytes) -> OfficeIdentity:
    """Decrypt the keystore; WrongPassphraseError when the passphrase does not open it."""
    doc = _load_doc(directory)
    owner, public = read_public(directory)
    sealed = _unb64(doc.get("sealed"), "sealed blob")
    secrets_json = primitives.passphrase_open(sealed, passphrase)  # WrongPassphraseError
    try:
        secrets = json.loads(secrets_json)
    except (ValueError, RecursionError) as e:
        raise KeystoreError("keystore sealed content is malformed") from e
    if not isinstance(secrets, dict):
        raise KeystoreError("keystore sealed content is malformed")
    keys: list[IdentityKey] = []
    for pk in public:
        try:
            private = primitives.load_private(pk.algorithm, _unb64(secrets.get(pk.key_id), "private key"))
        except CodecError as e:
            raise KeystoreError(f"keystore key {pk.key_id} is malformed") from e
        # A private key that does not match its clear metadata means tampering.
        if primitives.public_bytes(private) != pk.public:
            raise KeystoreError(f"keystore key {pk.key_id} does not match its public metadata")
        keys.append(IdentityKey(private, pk.not_before_ms, pk.not_after_ms))
    return OfficeIdentity(owner, tuple(keys))


def passphrase_from(
    file: Path | None,
    env: Mapping[str, str] = os.environ,
    *,
    var: str = PASSPHRASE_ENV,
    flag: str = "--passphrase-file",
) -> bytes:
    """The passphrase from ``file`` (one trailing newline stripped) or the variable ``var``."""
    if file is not None:
        with map_exceptions({OSError: ConfigError}, f"cannot read passphrase file {file}"):
            if file.stat().st_size > _MAX_PASSPHRASE_BYTES:
                raise ConfigError(f"passphrase file {file} is larger than {_MAX_PASSPHRASE_BYTES} bytes")
            data = file.read_bytes()
        data = data.removesuffix(b"\n").removesuffix(b"\r")
        if not data:
            raise ConfigError(f"passphrase file {file} is empty")
        return data
    value = env.get(var)
    if value:
        return value.encode()
    raise ConfigError(f"no passphrase: give {flag} or set {var}")
