"""Audit bundles: an exported log that the other country can check offline with nothing else.

A bundle is ONE JSON file (UTF-8, ``format = "liaison-audit-bundle/1"``)::

    format          "liaison-audit-bundle/1"
    exported_ms     when it was written (informative)
    gateway         the gateway id that signed the heads
    size            number of records = the newest head's tree size
    directory       base64 of the signed directory in force (authority signatures included)
    directory_digest  hex SHA-256 of the directory bytes (compare it with your pinned copy)
    public_keys     the gateway's and authorities' public keys, copied from the directory
                    for a human reader; checked equal to the directory's, never trusted on their own
    records         [{"index", "entry": base64 of the exact leaf bytes}], indices 0..size-1
    tree_heads      [head_to_json(...)] oldest first: readable fields plus
                    "signed_tree_head" = base64 of the exact signed head (signatures, co-signatures)
    consistency     [{"from", "to", "proof": [hex]}] between each pair of consecutive heads

``verify_bundle_data`` is pure (bytes in, a ``BundleReport`` out, or a precise
``LiaisonError``): it checks the bundle's own fields, then hands the evidence to
:func:`gateway.audit.verify.verify_audit_log`, the same workflow ``liaison audit
verify`` runs against a live gateway. The directory is verified by
:func:`gateway.audit.verify.trusted_directory` (the one copy of the trust rule:
against a pinned directory when one is given, else against its own authorities
with the digest reported for the reader to compare). ``write_bundle`` and
``verify_bundle`` are the two small file helpers. What this module does not do:
fetch anything from the network.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from exchange.core.directory import SignedDirectory, directory_digest
from exchange.core.errors import CodecError, ConfigError, OversizeError, map_exceptions
from exchange.core.model import Directory, PublicKey
from gateway.audit.codec import decode_record, decode_signed_tree_head, encode_signed_tree_head
from gateway.audit.errors import AuditError, TreeSizeError
from gateway.audit.treehead import SignedTreeHead
from gateway.audit.verify import LogEvidence, LogReport, trusted_directory, verify_audit_log

__all__ = [
    "BUNDLE_FORMAT",
    "MAX_BUNDLE_BYTES",
    "BundleError",
    "BundleReport",
    "build_bundle",
    "head_from_json",
    "head_to_json",
    "verify_bundle",
    "verify_bundle_data",
    "write_bundle",
]

BUNDLE_FORMAT: Final = "liaison-audit-bundle/1"
MAX_BUNDLE_BYTES: Final = 2 * 1024 * 1024 * 1024


class BundleError(AuditError):
    """The bundle is malformed or incomplete (missing field, bad base64, missing proof)."""


BundleReport = LogReport
"""What an offline check of a bundle established (the report of :func:`verify_audit_log`)."""


# --- JSON forms ----------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(value: object, what: str) -> bytes:
    if not isinstance(value, str):
        raise BundleError(f"{what} is not a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as e:
        raise BundleError(f"{what} is not valid base64") from e


def _unhex(value: object, what: str) -> bytes:
    if not isinstance(value, str):
        raise BundleError(f"{what} is not a hex string")
    try:
        return bytes.fromhex(value)
    except ValueError as e:
        raise BundleError(f"{what} is not valid hex") from e


def head_to_json(head: SignedTreeHead) -> dict[str, Any]:
    """A signed head for people and scripts; ``signed_tree_head`` holds the exact signed bytes."""
    th = head.tree_head
    first = next((s for s in head.signatures if s.algorithm.name == "ED25519"), None)
    return {
        "size": th.size,
        "root": th.root.hex(),
        "timestamp": th.timestamp_ms,
        "gateway": th.gateway,
        "signature": _b64(first.value) if first else "",
        "signatures": [
            {"key_id": s.key_id, "algorithm": s.algorithm.name.lower(), "signature": _b64(s.value)}
            for s in head.signatures
        ],
        "cosignatures": [
            {
                "witness": c.witness,
                "key_id": c.signature.key_id,
                "algorithm": c.signature.algorithm.name.lower(),
                "signature": _b64(c.signature.value),
            }
            for c in head.cosignatures
        ],
        "signed_tree_head": _b64(encode_signed_tree_head(head)),
    }


def head_from_json(obj: Mapping[str, Any], what: str = "tree head") -> SignedTreeHead:
    """The signed head from its exact bytes; the readable fields must say the same thing."""
    head = decode_signed_tree_head(_unb64(obj.get("signed_tree_head"), f"{what} signed_tree_head"))
    th = head.tree_head
    shown = {
        "size": th.size,
        "root": th.root.hex(),
        "timestamp": th.timestamp_ms,
        "gateway": th.gateway,
    }
    for field, value in shown.items():
        if obj.get(field) != value:
            raise BundleError(f"{what}: field {field} does not match its signed bytes")
    listed = obj.get("cosignatures", [])
    if (
        not isinstance(listed, list)
        or len(listed) != len(head.cosignatures)
        or any(
            not isinstance(c, Mapping)
            or (c.get("witness"), c.get("key_id")) != (h.witness, h.signature.key_id)
            for c, h in zip(listed, head.cosignatures, strict=False)
        )
    ):
        raise BundleError(f"{what}: cosignatures do not match its signed bytes")
    return head


def _keys_json(keys: Sequence[PublicKey]) -> list[dict[str, Any]]:
    return [
        {"key_id": k.key_id, "algorithm": k.algorithm.name.lower(), "public": _b64(k.public)} for k in keys
    ]


def _public_keys(directory: Directory, gateway: str) -> dict[str, Any]:
    holder = directory.gateway(gateway)
    return {
        "gateway": {"id": gateway, "keys": _keys_json(holder.keys if holder else ())},
        "authorities": {a.id: _keys_json(a.keys) for a in directory.authorities},
    }


def build_bundle(
    entries: Sequence[tuple[int, bytes]],
    heads: Sequence[SignedTreeHead],
    consistency: Mapping[tuple[int, int], Sequence[bytes]],
    signed_directory: bytes,
    exported_ms: int,
) -> dict[str, Any]:
    """The bundle as a JSON-ready dict; records beyond the newest head are left out."""
    if not heads:
        raise BundleError("a bundle needs at least one signed tree head")
    ordered = sorted({h.tree_head.size: h for h in heads}.values(), key=lambda h: h.tree_head.size)
    newest = ordered[-1].tree_head
    signed = SignedDirectory.from_bytes(signed_directory)
    return {
        "format": BUNDLE_FORMAT,
        "exported_ms": exported_ms,
        "gateway": newest.gateway,
        "size": newest.size,
        "directory": _b64(signed_directory),
        "directory_digest": directory_digest(signed),
        "public_keys": _public_keys(signed.directory, newest.gateway),
        "records": [{"index": i, "entry": _b64(e)} for i, e in entries if i < newest.size],
        "tree_heads": [head_to_json(h) for h in ordered],
        "consistency": [
            {"from": a.tree_head.size, "to": b.tree_head.size, "proof": [p.hex() for p in proof]}
            for a, b in itertools.pairwise(ordered)
            if (proof := consistency.get((a.tree_head.size, b.tree_head.size))) is not None
        ],
    }


# --- offline verification ------------------------------------------------------------


def _field(bundle: Mapping[str, Any], name: str, kind: type) -> Any:
    value = bundle.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise BundleError(f"bundle field {name!r} is missing or not a {kind.__name__}")
    return value


def _directory(bundle: Mapping[str, Any], pinned: bytes | None) -> SignedDirectory:
    signed = trusted_directory(_unb64(bundle.get("directory"), "directory"), pinned)
    if bundle.get("directory_digest") != directory_digest(signed):
        raise BundleError("directory_digest does not match the directory's bytes")
    return signed


def _check_public_keys(bundle: Mapping[str, Any], directory: Directory, gateway: str) -> None:
    if bundle.get("public_keys") != _public_keys(directory, gateway):
        raise BundleError("public_keys differ from the keys in the signed directory")


def _records(bundle: Mapping[str, Any]) -> list[tuple[int, bytes]]:
    entries: list[tuple[int, bytes]] = []
    for position, item in enumerate(_field(bundle, "records", list)):
        if not isinstance(item, Mapping) or not isinstance(item.get("index"), int):
            raise BundleError(f"record #{position} has no integer index")
        index = item["index"]
        entry = _unb64(item.get("entry"), f"record {index} entry")
        try:
            decode_record(entry)
        except CodecError as e:
            raise CodecError(f"record {index} does not decode: {e}") from e
        entries.append((index, entry))
    return entries


def _consistency(bundle: Mapping[str, Any]) -> dict[tuple[int, int], list[bytes]]:
    proofs: dict[tuple[int, int], list[bytes]] = {}
    for item in _field(bundle, "consistency", list):
        if not isinstance(item, Mapping) or not isinstance(item.get("proof"), list):
            raise BundleError("consistency item without from/to/proof")
        m, n = item.get("from"), item.get("to")
        if not isinstance(m, int) or not isinstance(n, int):
            raise BundleError("consistency item without integer from/to")
        proofs[(m, n)] = [_unhex(p, f"consistency proof {m}->{n}") for p in item["proof"]]
    return proofs


def verify_bundle_data(data: bytes, *, pinned: bytes | None = None) -> BundleReport:
    """Check a bundle offline; return what holds or raise the first precise failure.

    1. Format and size limits (a bundle too large to read is refused before parsing).
    2. The directory: the trust rule (against a pinned directory when given), the
       digest and the listed public keys (stops swapped gateway keys).
    3. The bundle's fields agree with its signed heads: size, one gateway.
    4. Records decode (stops garbled records); then the log workflow,
       :func:`verify_audit_log`: records contiguous, heads signed and matching
       their records, a consistency proof between each pair of consecutive heads,
       every co-signature.
    """
    if len(data) > MAX_BUNDLE_BYTES:
        raise OversizeError(f"bundle of {len(data)} bytes exceeds {MAX_BUNDLE_BYTES}")
    try:
        bundle = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise BundleError("bundle is not JSON") from e
    if not isinstance(bundle, dict) or bundle.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"not a {BUNDLE_FORMAT} bundle")
    signed = _directory(bundle, pinned)
    gateway = _field(bundle, "gateway", str)
    _check_public_keys(bundle, signed.directory, gateway)
    heads = [head_from_json(h, f"tree head #{i}") for i, h in enumerate(_field(bundle, "tree_heads", list))]
    if not heads:
        raise BundleError("bundle holds no signed tree head")
    heads.sort(key=lambda h: h.tree_head.size)
    size = _field(bundle, "size", int)
    if heads[-1].tree_head.size != size:
        raise TreeSizeError(f"bundle size {size} is not the newest head's size {heads[-1].tree_head.size}")
    if any(h.tree_head.gateway != gateway for h in heads):
        raise BundleError(f"a tree head is not from the bundle's gateway {gateway}")
    evidence = LogEvidence(heads, _records(bundle), _consistency(bundle), source="bundle")
    return verify_audit_log(evidence, signed)


# --- files ---------------------------------------------------------------------------


def write_bundle(path: Path, bundle: Mapping[str, Any]) -> None:
    """Write atomically: a partial bundle never sits under the final name."""
    tmp = path.with_name(path.name + ".partial")
    data = (json.dumps(bundle, indent=1) + "\n").encode("utf-8")
    exists = f"{tmp} already exists (a stale export or a planted link)"
    with map_exceptions({FileExistsError: ConfigError}, exists):
        # Never through a symlink planted at the temporary name, never over someone else's file.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    tmp.replace(path)


def verify_bundle(path: Path, *, pinned: Path | None = None) -> BundleReport:
    size = path.stat().st_size
    if size > MAX_BUNDLE_BYTES:
        raise OversizeError(f"bundle of {size} bytes exceeds {MAX_BUNDLE_BYTES}")
    return verify_bundle_data(path.read_bytes(), pinned=pinned.read_bytes() if pinned else None)
