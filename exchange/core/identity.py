"""Private identities of offices, gateways and authorities.

What it does: generates and holds one owner's private keys for both suites
(Ed25519 and ML-DSA-65 for signing; X25519 and ML-KEM-768+X25519 for key
encapsulation) with their validity windows, and derives the public
``model.PublicKey`` entries that go into the directory.

What it does not: no disk I/O (``keys.keystore`` stores it encrypted) and
no decision about which key the directory currently trusts.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from exchange.core import model, primitives
from exchange.core.errors import KeystoreError

__all__ = ["DEFAULT_VALID_DAYS", "IdentityKey", "OfficeIdentity", "generate"]

DEFAULT_VALID_DAYS = 730
_DAY_MS = 86_400_000

_ALGORITHMS = (
    model.Algorithm.ED25519,
    model.Algorithm.ML_DSA_65,
    model.Algorithm.X25519,
    model.Algorithm.ML_KEM_768_X25519,
)


@dataclass(frozen=True, eq=False)
class IdentityKey:
    """One private key with its validity window; repr shows only the key id."""

    key: primitives.PrivateKey
    not_before_ms: int
    not_after_ms: int = 0  # 0 = no end

    @property
    def algorithm(self) -> model.Algorithm:
        return self.key.algorithm

    # Derived once per key: an ML-DSA/ML-KEM public key and its id cost tens of microseconds,
    # and signing or opening asks for them on every message.
    @functools.cached_property
    def public(self) -> bytes:
        return primitives.public_bytes(self.key)

    @functools.cached_property
    def key_id(self) -> str:
        return primitives.key_id(self.algorithm, self.public)

    def public_key(self) -> model.PublicKey:
        return model.PublicKey(
            key_id=self.key_id,
            algorithm=self.algorithm,
            public=self.public,
            not_before_ms=self.not_before_ms,
            not_after_ms=self.not_after_ms,
        )

    def __repr__(self) -> str:
        return f"IdentityKey({self.algorithm.name}, key_id={self.key_id})"


@dataclass(frozen=True, eq=False)
class OfficeIdentity:
    """An owner's (office, gateway or authority) private keys for both suites."""

    owner_id: str
    keys: tuple[IdentityKey, ...]

    def __post_init__(self) -> None:
        try:
            model.check_id(self.owner_id, "owner")
        except ValueError as e:
            raise KeystoreError(str(e)) from e
        missing = [a.name for a in _ALGORITHMS if not any(k.algorithm is a for k in self.keys)]
        if missing:
            raise KeystoreError(f"identity {self.owner_id} lacks keys for {', '.join(missing)}")

    def public_keys(self) -> tuple[model.PublicKey, ...]:
        return tuple(k.public_key() for k in self.keys)

    def key(self, algorithm: model.Algorithm) -> IdentityKey:
        """The newest key of ``algorithm`` (largest not_before)."""
        return max((k for k in self.keys if k.algorithm is algorithm), key=lambda k: k.not_before_ms)

    def signing_keys(self, suite: model.Suite) -> tuple[primitives.PrivateKey, ...]:
        """The keys that sign for ``suite``: Ed25519, plus ML-DSA-65 for hybrid-pq."""
        return tuple(self.key(a).key for a in suite.signing_algorithms)

    def signing_key_ids(self, suite: model.Suite) -> tuple[str, ...]:
        return tuple(self.key(a).key_id for a in suite.signing_algorithms)

    def all_signing_keys(self) -> tuple[primitives.PrivateKey, ...]:
        """Every signing private key, old and new: ``seal`` picks the one the directory names current."""
        return tuple(k.key for k in self.keys if k.algorithm.is_signing)

    def signing_keys_for(
        self, holder: model.Office | model.Gateway | None, suite: model.Suite, now_ms: int
    ) -> tuple[primitives.PrivateKey, ...]:
        """The keys to sign with now, per algorithm of ``suite``, as the directory sees them.

        The holder's current directory key when this identity holds it; else the
        newest held key the directory lists as valid at ``now_ms`` (a RETIRING key
        in its overlap, while the directory does not announce the rotation yet);
        else the newest key. So a node keeps signing whether its keystore was
        rotated before or after the directory update reached it.
        """
        held = {k.key_id: k for k in self.keys}
        chosen = []
        for algorithm in suite.signing_algorithms:
            pick: IdentityKey | None = None
            if holder is not None:
                current = holder.current_key(algorithm, now_ms)
                pick = held.get(current.key_id) if current is not None else None
                if pick is None:
                    listed = [
                        held[k.key_id]
                        for k in holder.keys
                        if k.algorithm is algorithm and k.key_id in held and k.valid_at(now_ms)
                    ]
                    pick = max(listed, key=lambda k: k.not_before_ms, default=None)
            chosen.append((pick or self.key(algorithm)).key)
        return tuple(chosen)

    def encryption_key(self, suite: model.Suite) -> IdentityKey:
        return self.key(suite.kem_algorithm)

    def encryption_keys(self) -> dict[str, primitives.PrivateKey]:
        """Every key-encapsulation private key, by key id (old ones still open old mail)."""
        return {k.key_id: k.key for k in self.keys if not k.algorithm.is_signing}

    def __repr__(self) -> str:
        return f"OfficeIdentity({self.owner_id}, keys={[k.key_id for k in self.keys]})"


def generate(owner_id: str, now_ms: int, valid_days: int = DEFAULT_VALID_DAYS) -> OfficeIdentity:
    """Fresh keys of all four algorithms, valid from ``now_ms`` for ``valid_days``."""
    if valid_days <= 0:
        raise KeystoreError("valid_days must be positive")
    not_after = now_ms + valid_days * _DAY_MS
    return OfficeIdentity(
        owner_id,
        tuple(IdentityKey(primitives.generate(a), now_ms, not_after) for a in _ALGORITHMS),
    )
