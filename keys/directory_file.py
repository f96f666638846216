"""Files of the directory builder: public identities, drafts and signed directories.

Formats (documented for operators):

- public identity (``liaison keys export-public``): JSON
  ``{"format": "liaison-public-identity-v1", "owner": ID, "keys": [KEY...]}``;
- draft directory (``directory.draft.json``): JSON
  ``{"format": "liaison-directory-draft-v1", "deployment", "version",
  "issued_ms", "threshold", "authorities", "offices", "gateways", "policy",
  "limits"}``, editable by hand and by ``liaison directory …``;
- signed directory (``directory.pb``): the binary ``liaison.v1.SignedDirectory``
  exactly as nodes receive it, so its signed bytes never change on disk.

A KEY is ``{"key_id", "algorithm": "ed25519"|"ml-dsa-65"|"x25519"|
"ml-kem-768-x25519", "public": base64, "not_before_ms", "not_after_ms",
"status": "active"|"retiring"|"revoked", "revoked_at_ms"}``.

What it does not: verify signatures (``exchange.core.directory``) or touch
private keys. Every malformed file gives ConfigError/DirectoryInvalidError
naming the file.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from pathlib import Path
from typing import Any, Final, TypeVar

from exchange.core import model
from exchange.core.codec.directory import MAX_SIGNED_DIRECTORY_BYTES
from exchange.core.directory import SignedDirectory
from exchange.core.errors import ConfigError, DirectoryInvalidError, map_exceptions

__all__ = [
    "DRAFT_FORMAT",
    "PUBLIC_FORMAT",
    "directory_from_json",
    "directory_to_json",
    "key_from_json",
    "key_to_json",
    "load_any",
    "load_draft",
    "load_public",
    "load_signed",
    "public_from_json",
    "public_to_json",
    "read_signed_bytes",
    "save_draft",
    "save_signed",
]

DRAFT_FORMAT: Final = "liaison-directory-draft-v1"
PUBLIC_FORMAT: Final = "liaison-public-identity-v1"
_MAX_JSON_BYTES: Final = 8 * 1024 * 1024
# What malformed JSON documents raise: OverflowError is int(Infinity), RecursionError
# is nesting deeper than the parser allows.
_BAD_JSON: Final = (ValueError, KeyError, TypeError, OverflowError, RecursionError)


def _label(value: model.Algorithm | model.KeyStatus) -> str:
    return value.name.lower().replace("_", "-")


_E = TypeVar("_E", model.Algorithm, model.KeyStatus)


def _parse_label(cls: type[_E], text: str) -> _E:
    try:
        return cls[text.upper().replace("-", "_")]
    except KeyError:
        raise ValueError(f"unknown {cls.__name__} {text!r}") from None


def key_to_json(key: model.PublicKey) -> dict[str, Any]:
    return {
        "key_id": key.key_id,
        "algorithm": _label(key.algorithm),
        "public": base64.b64encode(key.public).decode("ascii"),
        "not_before_ms": key.not_before_ms,
        "not_after_ms": key.not_after_ms,
        "status": _label(key.status),
        "revoked_at_ms": key.revoked_at_ms,
    }


def key_from_json(doc: dict[str, Any]) -> model.PublicKey:
    return model.PublicKey(
        key_id=str(doc["key_id"]),
        algorithm=_parse_label(model.Algorithm, str(doc["algorithm"])),
        public=base64.b64decode(str(doc["public"]), validate=True),
        not_before_ms=int(doc.get("not_before_ms", 0)),
        not_after_ms=int(doc.get("not_after_ms", 0)),
        status=_parse_label(model.KeyStatus, str(doc.get("status", "active"))),
        revoked_at_ms=int(doc.get("revoked_at_ms", 0)),
    )


def public_to_json(owner: str, keys: tuple[model.PublicKey, ...]) -> dict[str, Any]:
    return {"format": PUBLIC_FORMAT, "owner": owner, "keys": [key_to_json(k) for k in keys]}


def public_from_json(doc: Any) -> tuple[str, tuple[model.PublicKey, ...]]:
    if not isinstance(doc, dict) or doc.get("format") != PUBLIC_FORMAT:
        raise ValueError(f"not a {PUBLIC_FORMAT} document")
    return str(doc["owner"]), tuple(key_from_json(k) for k in doc["keys"])


def directory_to_json(d: model.Directory) -> dict[str, Any]:
    def holder(h: model.Office | model.Gateway | model.Authority, **extra: str) -> dict[str, Any]:
        return {"id": h.id, **extra, "keys": [key_to_json(k) for k in h.keys]}

    limits = d.limits
    return {
        "format": DRAFT_FORMAT,
        "deployment": d.deployment,
        "version": d.version,
        "issued_ms": d.issued_ms,
        "threshold": d.threshold,
        "authorities": [holder(a, country=a.country, display_name=a.display_name) for a in d.authorities],
        "offices": [
            holder(o, country=o.country, agency=o.agency, city=o.city, display_name=o.display_name)
            for o in d.offices
        ],
        "gateways": [holder(g, country=g.country, display_name=g.display_name) for g in d.gateways],
        "policy": [
            {
                "sender": r.sender,
                "kinds": [k.label for k in sorted(r.kinds)],
                "recipients": sorted(r.recipients),
            }
            for r in d.policy
        ],
        # Every field, so a draft made by next-version keeps limits added later (e.g. rates).
        "limits": {
            f.name: (v.label if isinstance(v := getattr(limits, f.name), model.Suite) else v)
            for f in dataclasses.fields(limits)
        },
    }


def directory_from_json(doc: Any) -> model.Directory:
    """Build a ``model.Directory``; raises ValueError/KeyError/TypeError on bad input."""
    if not isinstance(doc, dict) or doc.get("format") != DRAFT_FORMAT:
        raise ValueError(f"not a {DRAFT_FORMAT} document")

    def keys(h: dict[str, Any]) -> tuple[model.PublicKey, ...]:
        return tuple(key_from_json(k) for k in h.get("keys", []))

    lim = dict(doc.get("limits", {}))
    if "minimum_suite" in lim:
        lim["minimum_suite"] = model.Suite.parse(str(lim["minimum_suite"]))
    return model.Directory(
        deployment=str(doc["deployment"]),
        version=int(doc["version"]),
        issued_ms=int(doc["issued_ms"]),
        threshold=int(doc["threshold"]),
        authorities=tuple(
            model.Authority(
                id=str(a["id"]),
                keys=keys(a),
                country=str(a.get("country", "")),
                display_name=str(a.get("display_name", "")),
            )
            for a in doc.get("authorities", [])
        ),
        offices=tuple(
            model.Office(
                id=str(o["id"]),
                keys=keys(o),
                country=str(o.get("country", "")),
                agency=str(o.get("agency", "")),
                city=str(o.get("city", "")),
                display_name=str(o.get("display_name", "")),
            )
            for o in doc.get("offices", [])
        ),
        gateways=tuple(
            model.Gateway(
                id=str(g["id"]),
                keys=keys(g),
                country=str(g.get("country", "")),
                display_name=str(g.get("display_name", "")),
            )
            for g in doc.get("gateways", [])
        ),
        policy=tuple(
            model.PolicyRule(
                sender=str(r["sender"]),
                kinds=frozenset(model.Kind.parse(str(k)) for k in r["kinds"]),
                recipients=frozenset(str(x) for x in r["recipients"]),
            )
            for r in doc.get("policy", [])
        ),
        limits=model.Limits(**lim),
    )


# --- files ------------------------------------------------------------------------


def _read(path: Path, limit: int) -> bytes:
    with map_exceptions({OSError: ConfigError}, f"cannot read {path}"):
        size = path.stat().st_size
        if size > limit:
            raise ConfigError(f"{path} is {size} bytes, limit {limit}")
        return path.read_bytes()


def _write(path: Path, data: bytes) -> None:
    with map_exceptions({OSError: ConfigError}, f"cannot write {path}"):
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)


def load_public(path: Path) -> tuple[str, tuple[model.PublicKey, ...]]:
    """Owner id and public keys from an exported public identity file."""
    try:
        return public_from_json(json.loads(_read(path, _MAX_JSON_BYTES)))
    except _BAD_JSON as e:
        raise ConfigError(f"{path} is not a valid public identity ({e})") from e


def load_draft(path: Path) -> model.Directory:
    try:
        return directory_from_json(json.loads(_read(path, _MAX_JSON_BYTES)))
    except _BAD_JSON as e:
        raise DirectoryInvalidError(f"{path} is not a valid directory draft ({e})") from e


def save_draft(path: Path, directory: model.Directory) -> None:
    _write(path, (json.dumps(directory_to_json(directory), indent=2) + "\n").encode())


def read_signed_bytes(path: Path) -> bytes:
    """The raw bytes of a signed directory file (size-checked), for ``verify_directory``."""
    return _read(path, MAX_SIGNED_DIRECTORY_BYTES)


def load_signed(path: Path) -> SignedDirectory:
    """Parse a signed directory file WITHOUT verifying it (see ``verify_directory``)."""
    return SignedDirectory.from_bytes(_read(path, MAX_SIGNED_DIRECTORY_BYTES))


def save_signed(path: Path, signed: SignedDirectory) -> None:
    _write(path, signed.to_bytes())


def load_any(path: Path) -> model.Directory | SignedDirectory:
    """A draft (JSON, starts with ``{``) or a signed directory (binary protobuf)."""
    data = _read(path, max(_MAX_JSON_BYTES, MAX_SIGNED_DIRECTORY_BYTES))
    if data.lstrip()[:1] == b"{":
        return load_draft(path)
    return SignedDirectory.from_bytes(data)
