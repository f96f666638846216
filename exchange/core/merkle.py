"""RFC 9162 (Certificate Transparency v2) Merkle tree: hashing and proof verification.

In the pure core because offices verify the gateway's log proofs themselves
(ADR 0013); ``gateway.audit.merkle`` re-exports it. What the other embassy
audits: the leaf and node hashes, the root of a list of leaf hashes, and the
inclusion (§2.1.3.2) and consistency (§2.1.4.2) verifiers. Pure code: no I/O,
no clock, no store. The verifiers take plain ``bytes`` and ints and return
``None`` or raise a precise exception of the :class:`AuditError` tree below (re-exported by
:mod:`gateway.audit.errors`); every length is checked before any
hashing. Proof *generation* and the stored-node tree live in
:mod:`gateway.audit.tree`, which only the gateway's stores need.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from typing import Final

from exchange.core.errors import LiaisonError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "MAX_PROOF_LEN",
    "MAX_TREE_SIZE",
    "AuditError",
    "ConsistencyProofError",
    "HashLengthError",
    "InclusionProofError",
    "ProofError",
    "TreeSizeError",
    "check_tree_size",
    "leaf_hash",
    "node_hash",
    "root_from_leaf_hashes",
    "split_point",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE: Final = 32
# 2**63 leaves is far beyond any log; it bounds proofs to 63 hashes (+1 in consistency).
MAX_TREE_SIZE: Final = 2**63 - 1
MAX_PROOF_LEN: Final = 64
EMPTY_ROOT: Final = hashlib.sha256(b"").digest()


# --- errors (the root of gateway.audit.errors' tree) ---------------------------------


class AuditError(LiaisonError):
    """Base of every audit-log error."""


class TreeSizeError(AuditError):
    """A tree size or leaf index is out of range (index >= size, m > n, m = 0, beyond the log)."""

    grpc_status = "OUT_OF_RANGE"


class HashLengthError(AuditError):
    """A hash given to a verifier is not a SHA-256 digest (32 bytes), or a proof is over-long."""


class ProofError(AuditError):
    """A proof does not verify against the given root(s)."""

    grpc_status = "FAILED_PRECONDITION"


class InclusionProofError(ProofError):
    """An inclusion proof fails RFC 9162 §2.1.3.2 (wrong length or wrong root)."""


class ConsistencyProofError(ProofError):
    """A consistency proof fails RFC 9162 §2.1.4.2 (wrong length or a root does not match)."""


# --- RFC 9162 §2.1.1 hashing ------------------------------------------------------


def leaf_hash(entry: bytes) -> bytes:
    """MTH({d(0)}) = HASH(0x00 || d(0)) (RFC 9162 §2.1.1)."""
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """HASH(0x01 || MTH(D[0:k]) || MTH(D[k:n])) (RFC 9162 §2.1.1)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def split_point(n: int) -> int:
    """k, the largest power of two smaller than n (n > 1), as RFC 9162 §2.1.1 defines it."""
    return 1 << ((n - 1).bit_length() - 1)


def root_from_leaf_hashes(hashes: Sequence[bytes]) -> bytes:
    """MTH(D[n]) straight from the RFC 9162 §2.1.1 recursion (O(n) hashes, no store)."""
    n = len(hashes)
    if n == 0:
        return EMPTY_ROOT  # MTH({}) = HASH()
    if n == 1:
        return hashes[0]
    k = split_point(n)
    return node_hash(root_from_leaf_hashes(hashes[:k]), root_from_leaf_hashes(hashes[k:]))


def check_tree_size(size: int, what: str) -> None:
    """A tree size (or leaf count) a verifier or prover accepts: 0..MAX_TREE_SIZE."""
    if not 0 <= size <= MAX_TREE_SIZE:
        raise TreeSizeError(f"{what} {size} is outside 0..{MAX_TREE_SIZE}")


# --- RFC 9162 verifiers --------------------------------------------------------------


def _check_hash(value: bytes, what: str) -> None:
    if len(value) != HASH_SIZE:
        raise HashLengthError(f"{what} is {len(value)} bytes, not {HASH_SIZE}")


def _check_proof(proof: Sequence[bytes]) -> None:
    # Limit checked before any hashing: a proof of a 2**63-leaf tree has < 64 hashes.
    if len(proof) > MAX_PROOF_LEN:
        raise HashLengthError(f"proof has {len(proof)} hashes, more than {MAX_PROOF_LEN}")
    for i, p in enumerate(proof):
        _check_hash(p, f"proof[{i}]")


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> None:
    """Check that ``leaf`` (a leaf hash) is at ``index`` in the tree of ``size`` with ``root``.

    RFC 9162 §2.1.3.2, step by step. Returns None or raises. ``size`` and
    ``root`` must both come from one signed tree head: proofs of the same shape
    verify for neighbouring sizes, so the root alone binds the size.
    """
    _check_proof(proof)
    _check_hash(leaf, "leaf hash")
    _check_hash(root, "root hash")
    check_tree_size(size, "tree size")
    # Step 1: leaf_index >= tree_size fails (also stops an index into the empty tree).
    if not 0 <= index < size:
        raise TreeSizeError(f"leaf index {index} is not below tree size {size}")
    # Step 2: fn = leaf_index, sn = tree_size - 1.
    fn, sn = index, size - 1
    # Step 3: r = hash.
    r = leaf
    # Step 4: fold each path element in on the side the index bits say.
    for p in proof:
        if sn == 0:
            # Stops a proof with extra elements (attacker padding).
            raise InclusionProofError(f"proof for index {index} in size {size} is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    # Step 5: sn must be 0 (stops a truncated proof) and r must equal the root.
    if sn != 0:
        raise InclusionProofError(f"proof for index {index} in size {size} is too short")
    if not hmac.compare_digest(r, root):
        raise InclusionProofError(f"proof for index {index} in size {size} does not lead to the root")


def verify_consistency(size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes) -> None:
    """Check that the tree (size2, root2) extends the tree (size1, root1).

    RFC 9162 §2.1.4.2 for 0 < size1 < size2; size1 = size2 needs an empty proof
    and equal roots. size1 = 0 is refused: a consistency claim about the empty
    tree proves nothing, and a caller asking for it has a bug. Returns None or
    raises. Sizes and roots must come from signed tree heads (see verify_inclusion).
    """
    _check_proof(proof)
    _check_hash(root1, "first root")
    _check_hash(root2, "second root")
    check_tree_size(size2, "second tree size")
    if not 0 < size1 <= size2:
        raise TreeSizeError(f"consistency needs 0 < size1 <= size2, got {size1} and {size2}")
    if size1 == size2:
        if proof:
            raise ConsistencyProofError(f"proof between equal sizes {size1} must be empty")
        if not hmac.compare_digest(root1, root2):
            raise ConsistencyProofError(f"different roots for the same size {size1}")
        return
    # Step 1: an empty proof fails.
    if not proof:
        raise ConsistencyProofError(f"empty proof between sizes {size1} and {size2}")
    path = list(proof)
    # Step 2: if first is an exact power of 2, prepend first_hash.
    if size1 & (size1 - 1) == 0:
        path.insert(0, root1)
    # Step 3: fn = first - 1, sn = second - 1.
    fn, sn = size1 - 1, size2 - 1
    # Step 4: shift both right while LSB(fn) is set.
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # Step 5: fr = sr = the first value of the path.
    fr = sr = path[0]
    # Step 6: fold in each subsequent value.
    for c in path[1:]:
        if sn == 0:
            raise ConsistencyProofError(f"proof between sizes {size1} and {size2} is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    # Step 7: fr == first_hash, sr == second_hash, and sn == 0.
    if sn != 0:
        raise ConsistencyProofError(f"proof between sizes {size1} and {size2} is too short")
    if not hmac.compare_digest(fr, root1):
        raise ConsistencyProofError(f"proof between sizes {size1} and {size2} does not lead to root1")
    if not hmac.compare_digest(sr, root2):
        raise ConsistencyProofError(f"proof between sizes {size1} and {size2} does not lead to root2")
