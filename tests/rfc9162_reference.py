"""A second, minimal RFC 9162 Merkle verifier, written only from the RFC text, for the tests.

Independent of ``gateway.audit.merkle`` on purpose: it imports nothing from
this project, shares no helper with it and follows the RFC's prose step by
step (each step is numbered as in the RFC), so a bug in our implementation
cannot hide in both. The tests hand it proofs served by a running gateway
and the published known-answer vectors.

What it does: the leaf and node hashes and the Merkle Tree Hash (§2.1.1),
inclusion proof verification (§2.1.3.2) and consistency proof verification
(§2.1.4.2). A verifier returns None or raises :class:`ReferenceProofError`.

What it does not: generate proofs, store anything, or bound proof lengths
(the RFC algorithms reject over-long proofs by themselves: ``sn`` reaches 0
before the path is used up). It is slow (MTH is the RFC's recursion), which
is fine for the few hundred entries the tests feed it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

__all__ = [
    "ReferenceProofError",
    "leaf_hash",
    "mth",
    "node_hash",
    "verify_consistency",
    "verify_inclusion",
]


class ReferenceProofError(Exception):
    """The proof does not prove what was asked (the RFC's "fail the proof verification")."""


def _hash(data: bytes) -> bytes:
    # §2.1.1: "HASH is the hash algorithm specified in the log's parameters" (SHA-256 here).
    return hashlib.sha256(data).digest()


def leaf_hash(entry: bytes) -> bytes:
    """§2.1.1: MTH({d(0)}) = HASH(0x00 || d(0))."""
    return _hash(b"\x00" + entry)


def node_hash(left: bytes, right: bytes) -> bytes:
    """§2.1.1: HASH(0x01 || MTH(D[0:k]) || MTH(D[k:n]))."""
    return _hash(b"\x01" + left + right)


def mth(entries: Sequence[bytes]) -> bytes:
    """§2.1.1: the Merkle Tree Hash of a list of entries (not of leaf hashes), by the RFC recursion."""
    n = len(entries)
    if n == 0:
        return _hash(b"")  # "The hash of an empty list is the hash of an empty string"
    if n == 1:
        return leaf_hash(entries[0])
    k = 1  # "k is the largest power of two smaller than n (i.e., k < n <= 2k)"
    while k * 2 < n:
        k *= 2
    return node_hash(mth(entries[:k]), mth(entries[k:]))


def _lsb(x: int) -> bool:
    return bool(x & 1)


def verify_inclusion(
    entry_hash: bytes, leaf_index: int, tree_size: int, inclusion_path: Sequence[bytes], root_hash: bytes
) -> None:
    """§2.1.3.2: prove that ``entry_hash`` (a leaf hash) is leaf ``leaf_index`` of the tree ``root_hash``."""
    # 1. "If leaf_index is greater than or equal to tree_size, then fail the proof verification."
    if not 0 <= leaf_index < tree_size:
        raise ReferenceProofError(f"leaf index {leaf_index} is not below tree size {tree_size}")
    # 2. "Set fn to leaf_index and sn to tree_size - 1."
    fn, sn = leaf_index, tree_size - 1
    # 3. "Set r to hash."
    r = entry_hash
    # 4. "For each value p in the inclusion_path array:"
    for p in inclusion_path:
        # a. "If sn is 0, then stop the iteration and fail the proof verification."
        if sn == 0:
            raise ReferenceProofError("inclusion path is longer than the tree is deep")
        # b. "If LSB(fn) is set, or if fn is equal to sn, then:"
        if _lsb(fn) or fn == sn:
            # i. "Set r to HASH(0x01 || p || r)."
            r = node_hash(p, r)
            # ii. "If LSB(fn) is not set, then right-shift both fn and sn equally
            #      until either LSB(fn) is set or fn is 0."
            if not _lsb(fn):
                while not _lsb(fn) and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            # "Otherwise: i. Set r to HASH(0x01 || r || p)."
            r = node_hash(r, p)
        # c. "Finally, right-shift both fn and sn one time."
        fn >>= 1
        sn >>= 1
    # 5. "If sn is equal to 0 and r and the root_hash are equal, then the log has
    #     proven the inclusion of hash. Otherwise, fail the proof verification."
    if sn != 0:
        raise ReferenceProofError("inclusion path is shorter than the tree is deep")
    if r != root_hash:
        raise ReferenceProofError("inclusion path does not lead to the root hash")


def verify_consistency(
    first: int, second: int, consistency_path: Sequence[bytes], first_hash: bytes, second_hash: bytes
) -> None:
    """§2.1.4.2: prove that the tree ``second_hash`` (size ``second``) extends ``first_hash`` (``first``).

    The RFC algorithm is stated for ``0 < first < second``. For ``first ==
    second`` §2.1.4.1 gives PROOF = SUBPROOF(m, D[m], true) = {} (the empty
    proof), and the trees are the same exactly when the roots are equal.
    """
    if not 0 < first <= second:
        raise ReferenceProofError(f"sizes {first} -> {second} are outside 0 < first <= second")
    if first == second:
        if consistency_path or first_hash != second_hash:
            raise ReferenceProofError("equal sizes need an empty proof and equal roots")
        return
    path = list(consistency_path)
    # 1. "If consistency_path is an empty array, stop and fail the proof verification."
    if not path:
        raise ReferenceProofError("empty consistency path")
    # 2. "If first is an exact power of 2, then prepend first_hash to the consistency_path array."
    if first & (first - 1) == 0:
        path = [first_hash, *path]
    # 3. "Set fn to first - 1 and sn to second - 1."
    fn, sn = first - 1, second - 1
    # 4. "If LSB(fn) is set, then right-shift both fn and sn equally until LSB(fn) is not set."
    while _lsb(fn):
        fn >>= 1
        sn >>= 1
    # 5. "Set both fr and sr to the first value in the consistency_path array."
    fr = sr = path[0]
    # 6. "For each subsequent value c in the consistency_path array:"
    for c in path[1:]:
        # a. "If sn is 0, then stop the iteration and fail the proof verification."
        if sn == 0:
            raise ReferenceProofError("consistency path is longer than the tree is deep")
        # b. "If LSB(fn) is set, or if fn is equal to sn, then:"
        if _lsb(fn) or fn == sn:
            # i. "Set fr to HASH(0x01 || c || fr)."  ii. "Set sr to HASH(0x01 || c || sr)."
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            # iii. "If LSB(fn) is not set, then right-shift both fn and sn equally
            #       until either LSB(fn) is set or fn is 0."
            if not _lsb(fn):
                while not _lsb(fn) and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            # "Otherwise: i. Set sr to HASH(0x01 || sr || c)."
            sr = node_hash(sr, c)
        # c. "Finally, right-shift both fn and sn one time."
        fn >>= 1
        sn >>= 1
    # 7. "verify that the fr calculated is equal to the first_hash supplied, that the
    #     sr calculated is equal to the second_hash supplied, and that sn is 0."
    if sn != 0:
        raise ReferenceProofError("consistency path is shorter than the tree is deep")
    if fr != first_hash:
        raise ReferenceProofError("consistency path does not lead to the first root")
    if sr != second_hash:
        raise ReferenceProofError("consistency path does not lead to the second root")
