"""Signed directory: m-of-n authority signatures, verification and live updates.

What it does: signs the exact serialized directory bytes with an authority's
keys, verifies a signed directory against a trusted previous directory (or,
for the first one, against a pinned ``TrustAnchor``), refuses rollback, and
holds the current verified directory in ``DirectoryState``. The rotation
rule follows TUF's root rotation: a new version must be signed by a
threshold of the TRUSTED directory's authorities and ALSO by a threshold of
its own authorities, so authorities can be replaced only with the consent
of the old set and the new set.

What it does not: no I/O (callers pass bytes), no clock (authority keys
count by status: a REVOKED authority key is not used; windows are not
checked because a directory carries no trustworthy time of its own), and
no envelope checks (see ``exchange.core.envelope``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from exchange.core import model, primitives
from exchange.core.codec.directory import (
    MAX_SIGNED_DIRECTORY_BYTES,
    AuthoritySignature,
    KeySignature,
    decode_signed_directory,
    encode_directory,
    encode_signed_directory,
)
from exchange.core.errors import (
    DirectoryError,
    DirectoryInvalidError,
    DirectoryRollbackError,
    DirectorySignatureError,
    OversizeError,
    SignatureError,
)

__all__ = [
    "SIGNATURE_CONTEXT",
    "AuthoritySignature",
    "DirectoryState",
    "KeySignature",
    "SignedDirectory",
    "TrustAnchor",
    "authority_signing_keys",
    "counting_authorities",
    "directory_digest",
    "sign_directory",
    "verify_directory",
]

SIGNATURE_CONTEXT = "directory"
"""Domain-separation context of authority signatures over directory bytes."""


@dataclass(frozen=True)
class SignedDirectory:
    """A directory as signed: its exact bytes, the parsed value and the signatures."""

    raw: bytes
    directory: model.Directory
    signatures: tuple[AuthoritySignature, ...] = ()

    @classmethod
    def from_bytes(cls, data: bytes) -> SignedDirectory:
        """Parse WITHOUT verifying signatures (for display and for pinning an anchor)."""
        if len(data) > MAX_SIGNED_DIRECTORY_BYTES:
            raise OversizeError(f"signed directory is {len(data)} bytes, limit {MAX_SIGNED_DIRECTORY_BYTES}")
        raw, directory, signatures = decode_signed_directory(data)
        return cls(raw, directory, signatures)

    def to_bytes(self) -> bytes:
        return encode_signed_directory(self.raw, self.signatures)

    @property
    def version(self) -> int:
        return self.directory.version

    def signed_by(self) -> tuple[str, ...]:
        """Authority ids that put signature entries on it (verified or not)."""
        return tuple(dict.fromkeys(s.authority for s in self.signatures))


@dataclass(frozen=True)
class TrustAnchor:
    """The authorities and threshold pinned in node configuration."""

    deployment: str
    authorities: tuple[model.Authority, ...]
    threshold: int

    def __post_init__(self) -> None:
        if not 1 <= self.threshold <= len(self.authorities):
            raise DirectoryInvalidError(
                f"trust anchor threshold {self.threshold} outside 1..{len(self.authorities)}"
            )

    @classmethod
    def from_directory(cls, directory: model.Directory) -> TrustAnchor:
        return cls(directory.deployment, directory.authorities, directory.threshold)


def directory_digest(signed: SignedDirectory | bytes) -> str:
    """Hex SHA-256 of the exact directory bytes (what operators compare by eye)."""
    raw = signed.raw if isinstance(signed, SignedDirectory) else signed
    return hashlib.sha256(raw).hexdigest()


def authority_signing_keys(authority: model.Authority) -> tuple[model.PublicKey, ...]:
    """The keys that must ALL sign for ``authority`` to count (signing, not revoked)."""
    return tuple(
        k for k in authority.keys if k.algorithm.is_signing and k.status is not model.KeyStatus.REVOKED
    )


def sign_directory(
    target: SignedDirectory | model.Directory,
    authority_id: str,
    authority_keys: Sequence[primitives.PrivateKey],
) -> SignedDirectory:
    """Add ``authority_id``'s signatures (one per key) over the exact directory bytes.

    An unsigned ``model.Directory`` is serialized first; a ``SignedDirectory``
    keeps its bytes and its other authorities' signatures. A previous entry of
    the same authority is replaced, so re-signing never duplicates.
    """
    try:
        model.check_id(authority_id, "authority")
    except ValueError as e:
        raise DirectoryError(str(e)) from e
    signed = (
        target if isinstance(target, SignedDirectory) else SignedDirectory(encode_directory(target), target)
    )
    if not authority_keys:
        raise DirectoryError(f"authority {authority_id} has no keys to sign with")
    entries: list[KeySignature] = []
    for key in authority_keys:
        if not key.algorithm.is_signing:
            raise DirectoryError(f"authority {authority_id}: {key.algorithm.name} key cannot sign")
        public = primitives.public_bytes(key)
        entries.append(
            KeySignature(
                key_id=primitives.key_id(key.algorithm, public),
                algorithm=key.algorithm,
                value=primitives.sign(key, signed.raw, SIGNATURE_CONTEXT),
            )
        )
    others = tuple(s for s in signed.signatures if s.authority != authority_id)
    return SignedDirectory(
        signed.raw, signed.directory, (*others, AuthoritySignature(authority_id, tuple(entries)))
    )


def _authority_counts(authority: model.Authority, raw: bytes, entries: Sequence[AuthoritySignature]) -> bool:
    """True only when EVERY signing key of ``authority`` has a verifying signature."""
    required = authority_signing_keys(authority)
    if not required:
        return False
    offered = [s for e in entries if e.authority == authority.id for s in e.signatures]
    return all(any(_verifies(key, s, raw) for s in offered) for key in required)


def _verifies(key: model.PublicKey, sig: KeySignature, raw: bytes) -> bool:
    if sig.key_id != key.key_id or sig.algorithm is not key.algorithm:
        return False
    try:
        primitives.verify(key.algorithm, key.public, sig.value, raw, SIGNATURE_CONTEXT)
    except SignatureError:
        return False
    return True


def counting_authorities(signed: SignedDirectory, authorities: Sequence[model.Authority]) -> tuple[str, ...]:
    """Ids of the ``authorities`` whose signatures on ``signed`` all verify (each once)."""
    return tuple(a.id for a in authorities if _authority_counts(a, signed.raw, signed.signatures))


def _require_threshold(
    signed: SignedDirectory, authorities: Sequence[model.Authority], threshold: int, whose: str
) -> None:
    counted = counting_authorities(signed, authorities)
    if len(counted) < threshold:
        names = ", ".join(counted) or "none"
        raise DirectorySignatureError(
            f"directory v{signed.version} has valid signatures from {len(counted)} of the {threshold} "
            f"required {whose} authorities (counted: {names}; {len(authorities)} known)"
        )


def verify_directory(
    data: bytes, *, trusted: model.Directory | None, anchor: TrustAnchor | None
) -> SignedDirectory:
    """Verify a signed directory and return it; raise a precise DirectoryError otherwise.

    ``trusted`` is the current verified directory (an update); ``anchor`` the
    pinned authorities for the first directory a node ever accepts. When both
    are given, ``trusted`` decides: it is newer than the anchor.
    """
    # 1. Size before parse: stops memory exhaustion by a huge blob.
    if len(data) > MAX_SIGNED_DIRECTORY_BYTES:
        raise OversizeError(f"signed directory is {len(data)} bytes, limit {MAX_SIGNED_DIRECTORY_BYTES}")
    # 2. Parse; keep the exact signed bytes (never re-serialize to verify).
    signed = SignedDirectory.from_bytes(data)
    new = signed.directory
    # 3. Choose the signer set: the trusted directory's authorities (rotation
    #    needs the old set's consent), else the pinned anchor.
    if trusted is not None:
        deployment, signers, threshold = trusted.deployment, trusted.authorities, trusted.threshold
    elif anchor is not None:
        deployment, signers, threshold = anchor.deployment, anchor.authorities, anchor.threshold
    else:
        raise DirectoryError("no trusted directory and no trust anchor to verify against")
    # 4. Same deployment: stops a directory of another deployment being replayed here.
    if new.deployment != deployment:
        raise DirectoryInvalidError(
            f"directory is for deployment {new.deployment!r}, this node trusts {deployment!r}"
        )
    # 5. m-of-n by the trusted signers; an authority counts once and only if
    #    ALL its keys signed (stops one stolen key, e.g. Ed25519 only, from counting).
    _require_threshold(signed, signers, threshold, "trusted")
    # 6. Version must move forward: stops rollback to an older (e.g. pre-revocation) directory.
    if trusted is not None and new.version <= trusted.version:
        raise DirectoryRollbackError(
            f"directory v{new.version} does not move forward from trusted v{trusted.version}"
        )
    # 7. The new directory must also satisfy its OWN authorities and threshold:
    #    stops the old set from installing authorities that never agreed.
    if (new.authorities, new.threshold) != (tuple(signers), threshold):
        _require_threshold(signed, new.authorities, new.threshold, "new")
    return signed


class DirectoryState:
    """The current verified directory of a node; ``apply`` swaps in verified updates."""

    def __init__(self, anchor: TrustAnchor, current: SignedDirectory | None = None) -> None:
        self._anchor = anchor
        self._current = current

    @property
    def current(self) -> SignedDirectory | None:
        return self._current

    @property
    def directory(self) -> model.Directory:
        if self._current is None:
            raise DirectoryError("no directory has been applied yet")
        return self._current.directory

    def apply(self, data: bytes) -> SignedDirectory:
        """Verify ``data`` against the current directory (or the anchor) and adopt it."""
        trusted = self._current.directory if self._current is not None else None
        signed = verify_directory(data, trusted=trusted, anchor=self._anchor)
        self._current = signed
        return signed
