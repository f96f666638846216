"""Directory codec: ``model.Directory`` and signed directories to and from protobuf.

What it does: converts offices, gateways, authorities, public keys, policy
rules and limits between the domain types of ``exchange.core.model`` and the
generated ``liaison.v1`` directory messages; encodes and decodes a
``SignedDirectory`` while keeping the EXACT serialized directory bytes that
the authorities sign (they are never re-serialized).

What it does not: it verifies no signature and applies no trust decision
(see ``exchange.core.directory``). Size limits are checked before parsing;
protobuf errors become ``CodecError``/``OversizeError`` and broken model
invariants become ``DirectoryInvalidError``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, TypeVar

from google.protobuf.message import DecodeError

from exchange._pb.liaison.v1 import directory_pb2, envelope_pb2
from exchange.core import model
from exchange.core.errors import CodecError, DirectoryInvalidError, OversizeError

__all__ = [
    "MAX_DIRECTORY_BYTES",
    "MAX_SIGNED_DIRECTORY_BYTES",
    "AuthoritySignature",
    "KeySignature",
    "decode_directory",
    "decode_signed_directory",
    "encode_directory",
    "encode_signed_directory",
]

MAX_DIRECTORY_BYTES: Final = 4 * 1024 * 1024
"""Largest serialized ``Directory`` accepted (hundreds of offices with PQ keys fit)."""

MAX_SIGNED_DIRECTORY_BYTES: Final = MAX_DIRECTORY_BYTES + 256 * 1024
"""Largest ``SignedDirectory``: the directory plus room for many ML-DSA signatures."""


@dataclass(frozen=True)
class KeySignature:
    """One signature by one authority key over the exact directory bytes."""

    key_id: str
    algorithm: model.Algorithm
    value: bytes


@dataclass(frozen=True)
class AuthoritySignature:
    """All signatures one authority put on a directory (one per key it holds)."""

    authority: str
    signatures: tuple[KeySignature, ...]


# --- enums ------------------------------------------------------------------------


_E = TypeVar("_E", model.Algorithm, model.KeyStatus, model.Kind, model.Suite)


def _enum(cls: type[_E], value: int, what: str) -> _E:
    try:
        return cls(value)
    except ValueError as e:
        raise CodecError(f"directory: {what} has unknown value {value}") from e


# --- encode -----------------------------------------------------------------------


def _encode_key(key: model.PublicKey) -> directory_pb2.PublicKey:
    return directory_pb2.PublicKey(
        key_id=key.key_id,
        algorithm=envelope_pb2.Algorithm.ValueType(int(key.algorithm)),
        public=key.public,
        not_before_ms=key.not_before_ms,
        not_after_ms=key.not_after_ms,
        status=directory_pb2.KeyStatus.ValueType(int(key.status)),
        revoked_at_ms=key.revoked_at_ms,
    )


def _encode_limits(limits: model.Limits) -> directory_pb2.Limits:
    return directory_pb2.Limits(
        max_body_bytes=limits.max_body_bytes,
        max_envelope_bytes=limits.max_envelope_bytes,
        max_clock_skew_s=limits.max_clock_skew_s,
        max_ttl_s=limits.max_ttl_s,
        minimum_suite=envelope_pb2.Suite.ValueType(int(limits.minimum_suite)),
        max_recipients=limits.max_recipients,
        sender_rate_per_s=limits.sender_rate_per_s,
        sender_burst=limits.sender_burst,
    )


def _to_pb(directory: model.Directory) -> directory_pb2.Directory:
    msg = directory_pb2.Directory(
        deployment=directory.deployment,
        version=directory.version,
        issued_ms=directory.issued_ms,
        threshold=directory.threshold,
        limits=_encode_limits(directory.limits),
    )
    for office in directory.offices:
        msg.offices.append(
            directory_pb2.Office(
                id=office.id,
                country=office.country,
                agency=office.agency,
                city=office.city,
                display_name=office.display_name,
                keys=[_encode_key(k) for k in office.keys],
            )
        )
    for gateway in directory.gateways:
        msg.gateways.append(
            directory_pb2.Gateway(
                id=gateway.id,
                country=gateway.country,
                display_name=gateway.display_name,
                keys=[_encode_key(k) for k in gateway.keys],
            )
        )
    for authority in directory.authorities:
        msg.authorities.append(
            directory_pb2.Authority(
                id=authority.id,
                country=authority.country,
                display_name=authority.display_name,
                keys=[_encode_key(k) for k in authority.keys],
            )
        )
    for rule in directory.policy:
        msg.policy.append(
            directory_pb2.PolicyRule(
                sender=rule.sender,
                kinds=[envelope_pb2.Kind.ValueType(int(k)) for k in sorted(rule.kinds)],
                recipients=sorted(rule.recipients),
            )
        )
    return msg


def encode_directory(directory: model.Directory) -> bytes:
    """Serialize a directory; these are the bytes authorities sign."""
    data = _to_pb(directory).SerializeToString(deterministic=True)
    if len(data) > MAX_DIRECTORY_BYTES:
        raise OversizeError(f"directory is {len(data)} bytes, limit {MAX_DIRECTORY_BYTES}")
    return data


def encode_signed_directory(directory_bytes: bytes, signatures: Sequence[AuthoritySignature]) -> bytes:
    """Serialize a signed directory around the exact ``directory_bytes``."""
    msg = directory_pb2.SignedDirectory(directory=directory_bytes)
    for entry in signatures:
        msg.signatures.append(
            directory_pb2.AuthoritySignature(
                authority=entry.authority,
                signatures=[
                    envelope_pb2.Signature(
                        key_id=s.key_id,
                        algorithm=envelope_pb2.Algorithm.ValueType(int(s.algorithm)),
                        value=s.value,
                    )
                    for s in entry.signatures
                ],
            )
        )
    data = msg.SerializeToString(deterministic=True)
    if len(data) > MAX_SIGNED_DIRECTORY_BYTES:
        raise OversizeError(f"signed directory is {len(data)} bytes, limit {MAX_SIGNED_DIRECTORY_BYTES}")
    return data


# --- decode -----------------------------------------------------------------------


def _decode_key(msg: directory_pb2.PublicKey) -> model.PublicKey:
    return model.PublicKey(
        key_id=msg.key_id,
        algorithm=_enum(model.Algorithm, msg.algorithm, f"key {msg.key_id!r} algorithm"),
        public=msg.public,
        not_before_ms=msg.not_before_ms,
        not_after_ms=msg.not_after_ms,
        status=_enum(model.KeyStatus, msg.status, f"key {msg.key_id!r} status"),
        revoked_at_ms=msg.revoked_at_ms,
    )


def _decode_limits(msg: directory_pb2.Limits) -> model.Limits:
    return model.Limits(
        max_body_bytes=msg.max_body_bytes,
        max_envelope_bytes=msg.max_envelope_bytes,
        max_clock_skew_s=msg.max_clock_skew_s,
        max_ttl_s=msg.max_ttl_s,
        minimum_suite=_enum(model.Suite, msg.minimum_suite, "limits minimum_suite"),
        max_recipients=msg.max_recipients,
        sender_rate_per_s=msg.sender_rate_per_s,
        sender_burst=msg.sender_burst,
    )


def _from_pb(msg: directory_pb2.Directory) -> model.Directory:
    if not msg.HasField("limits"):
        raise CodecError("directory: limits are missing")
    return model.Directory(
        deployment=msg.deployment,
        version=msg.version,
        issued_ms=msg.issued_ms,
        offices=tuple(
            model.Office(
                id=o.id,
                keys=tuple(_decode_key(k) for k in o.keys),
                country=o.country,
                agency=o.agency,
                city=o.city,
                display_name=o.display_name,
            )
            for o in msg.offices
        ),
        gateways=tuple(
            model.Gateway(
                id=g.id,
                keys=tuple(_decode_key(k) for k in g.keys),
                country=g.country,
                display_name=g.display_name,
            )
            for g in msg.gateways
        ),
        authorities=tuple(
            model.Authority(
                id=a.id,
                keys=tuple(_decode_key(k) for k in a.keys),
                country=a.country,
                display_name=a.display_name,
            )
            for a in msg.authorities
        ),
        threshold=msg.threshold,
        policy=tuple(
            model.PolicyRule(
                sender=r.sender,
                kinds=frozenset(_enum(model.Kind, k, "policy kind") for k in r.kinds),
                recipients=frozenset(r.recipients),
            )
            for r in msg.policy
        ),
        limits=_decode_limits(msg.limits),
    )


def decode_directory(data: bytes) -> model.Directory:
    """Parse directory bytes into a ``model.Directory`` (size checked first)."""
    if len(data) > MAX_DIRECTORY_BYTES:
        raise OversizeError(f"directory is {len(data)} bytes, limit {MAX_DIRECTORY_BYTES}")
    msg = directory_pb2.Directory()
    try:
        msg.ParseFromString(data)
    except DecodeError as e:
        raise CodecError("directory: not a valid liaison.v1.Directory") from e
    try:
        return _from_pb(msg)
    except CodecError:
        raise
    except ValueError as e:
        raise DirectoryInvalidError(str(e)) from e


def decode_signed_directory(data: bytes) -> tuple[bytes, model.Directory, tuple[AuthoritySignature, ...]]:
    """Parse a signed directory: (exact directory bytes, directory, signatures)."""
    if len(data) > MAX_SIGNED_DIRECTORY_BYTES:
        raise OversizeError(f"signed directory is {len(data)} bytes, limit {MAX_SIGNED_DIRECTORY_BYTES}")
    msg = directory_pb2.SignedDirectory()
    try:
        msg.ParseFromString(data)
    except DecodeError as e:
        raise CodecError("signed directory: not a valid liaison.v1.SignedDirectory") from e
    raw = bytes(msg.directory)
    directory = decode_directory(raw)
    signatures = tuple(
        AuthoritySignature(
            authority=entry.authority,
            signatures=tuple(
                KeySignature(
                    key_id=s.key_id,
                    algorithm=_enum(model.Algorithm, s.algorithm, f"signature {s.key_id!r} algorithm"),
                    value=s.value,
                )
                for s in entry.signatures
            ),
        )
        for entry in msg.signatures
    )
    return raw, directory, signatures
