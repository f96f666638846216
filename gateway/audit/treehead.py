"""Signed tree heads: the gateway's signed statement of the log's size and root.

Pure: builds, signs and verifies tree heads over their exact serialized
bytes (context "tree-head"); witnesses co-sign the same bytes (context
"cosignature"). Storage and scheduling live in the gateway shell.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from exchange.core import primitives
from exchange.core.envelope import Signature
from exchange.core.errors import SignatureError
from exchange.core.logproof import TREE_HEAD_CONTEXT, verify_head_signatures
from exchange.core.model import Directory

__all__ = [
    "COSIGNATURE_CONTEXT",
    "TREE_HEAD_CONTEXT",
    "Cosignature",
    "SignedTreeHead",
    "TreeHead",
    "sign_cosignature",
    "sign_tree_head",
    "verify_cosignature",
]

COSIGNATURE_CONTEXT = "cosignature"


@dataclass(frozen=True)
class TreeHead:
    size: int
    root: bytes
    timestamp_ms: int
    gateway: str

    def __post_init__(self) -> None:
        if self.size < 0 or len(self.root) != 32:
            raise ValueError("tree head needs size >= 0 and a 32-byte root")


@dataclass(frozen=True)
class Cosignature:
    witness: str
    signature: Signature


@dataclass(frozen=True)
class SignedTreeHead:
    tree_head: TreeHead
    tree_head_bytes: bytes
    signatures: tuple[Signature, ...]
    cosignatures: tuple[Cosignature, ...] = ()

    def verify(self, directory: Directory) -> None:
        """Every signature verifies with the named gateway's keys; Ed25519 at least."""
        verify_head_signatures(
            self.tree_head.gateway, tuple(self.signatures), self.tree_head_bytes, directory
        )


def sign_cosignature(head: SignedTreeHead, witness: str, key: primitives.PrivateKey) -> Cosignature:
    """A witness's Ed25519 signature over the exact tree head bytes."""
    public = primitives.public_bytes(key)
    return Cosignature(
        witness,
        Signature(
            key_id=primitives.key_id(key.algorithm, public),
            algorithm=key.algorithm,
            value=primitives.sign(key, head.tree_head_bytes, COSIGNATURE_CONTEXT),
        ),
    )


def verify_cosignature(head: SignedTreeHead, cosignature: Cosignature, directory: Directory) -> None:
    """The witness is an authority of the directory and its key signed these exact head bytes."""
    authority = directory.authority(cosignature.witness)
    if authority is None:
        raise SignatureError(f"witness {cosignature.witness!r} is not an authority of the directory")
    key = authority.key(cosignature.signature.key_id)
    if key is None or key.algorithm is not cosignature.signature.algorithm:
        raise SignatureError(f"witness {cosignature.witness} has no key {cosignature.signature.key_id}")
    primitives.verify(
        key.algorithm, key.public, cosignature.signature.value, head.tree_head_bytes, COSIGNATURE_CONTEXT
    )


def sign_tree_head(
    head: TreeHead, head_bytes: bytes, keys: Sequence[primitives.PrivateKey]
) -> tuple[Signature, ...]:
    return tuple(
        Signature(
            key_id=primitives.key_id(k.algorithm, primitives.public_bytes(k)),
            algorithm=k.algorithm,
            value=primitives.sign(k, head_bytes, TREE_HEAD_CONTEXT),
        )
        for k in keys
    )
