"""RFC 9162 (Certificate Transparency v2) Merkle tree: hashing, proofs, verifiers.

Pure code: no I/O, no clock. Stores keep the hash of every *perfect subtree*
once it is complete: node ``(level, index)`` covers leaves
``[index * 2**level, (index + 1) * 2**level)``; level 0 holds the leaf hashes.
Such nodes never change after they are written, so any ``MTH(D[a:b])`` that an
RFC proof needs decomposes into O(log n) stored nodes, and one batched
:meth:`NodeReader.get_nodes` call serves a whole proof or root.

What this module does not do: storage, signing of tree heads, and parsing of
proof encodings. The verifiers take plain ``bytes`` and ints and return
``None`` or raise a precise :mod:`gateway.audit.errors` exception.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Protocol, TypeAlias

from gateway.audit.errors import (
    ConsistencyProofError,
    HashLengthError,
    InclusionProofError,
    MissingNodeError,
    TreeSizeError,
)

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "MAX_PROOF_LEN",
    "MAX_TREE_SIZE",
    "Frontier",
    "MemoryTree",
    "NodeKey",
    "NodeReader",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "perfect_keys",
    "root_at",
    "root_from_leaf_hashes",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE: Final = 32
# 2**63 leaves is far beyond any log; it bounds proofs to 63 hashes (+1 in consistency).
MAX_TREE_SIZE: Final = 2**63 - 1
MAX_PROOF_LEN: Final = 64
EMPTY_ROOT: Final = hashlib.sha256(b"").digest()

NodeKey: TypeAlias = tuple[int, int]
"""``(level, index)`` of a perfect subtree."""


class NodeReader(Protocol):
    """Where the perfect-subtree hashes live (a store, or :class:`MemoryTree`)."""

    def get_nodes(self, keys: list[NodeKey]) -> dict[NodeKey, bytes]:
        """Return the stored hash for each key that exists (absent keys are left out)."""
        ...


# --- RFC 9162 §2.1.1 hashing ------------------------------------------------------


def leaf_hash(entry: bytes) -> bytes:
    """MTH({d(0)}) = HASH(0x00 || d(0)) (RFC 9162 §2.1.1)."""
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """HASH(0x01 || MTH(D[0:k]) || MTH(D[k:n])) (RFC 9162 §2.1.1)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """k, the largest power of two smaller than n (n > 1), as RFC 9162 §2.1.1 defines it."""
    return 1 << ((n - 1).bit_length() - 1)


def root_from_leaf_hashes(hashes: Sequence[bytes]) -> bytes:
    """MTH(D[n]) straight from the RFC 9162 §2.1.1 recursion (O(n) hashes, no store)."""
    n = len(hashes)
    if n == 0:
        return EMPTY_ROOT  # MTH({}) = HASH()
    if n == 1:
        return hashes[0]
    k = _split(n)
    return node_hash(root_from_leaf_hashes(hashes[:k]), root_from_leaf_hashes(hashes[k:]))


# --- subtree plans: which stored nodes make up MTH(D[a:b]) ------------------------


@dataclass(frozen=True, slots=True)
class _Join:
    left: _Plan
    right: _Plan


_Plan: TypeAlias = "NodeKey | _Join"


def _plan(a: int, b: int) -> _Plan:
    """MTH(D[a:b]) as a tree of stored perfect nodes (b > a).

    RFC proofs only ask for aligned ranges, which cost one node per set bit of
    ``b - a``; an unaligned range still evaluates correctly, only with more nodes.
    """
    n = b - a
    if n & (n - 1) == 0 and a % n == 0:
        level = n.bit_length() - 1
        return (level, a >> level)
    k = _split(n)
    return _Join(_plan(a, a + k), _plan(a + k, b))


def _collect(plan: _Plan, out: set[NodeKey]) -> None:
    if isinstance(plan, _Join):
        _collect(plan.left, out)
        _collect(plan.right, out)
    else:
        out.add(plan)


def _evaluate(plan: _Plan, nodes: Mapping[NodeKey, bytes]) -> bytes:
    if isinstance(plan, _Join):
        return node_hash(_evaluate(plan.left, nodes), _evaluate(plan.right, nodes))
    try:
        return nodes[plan]
    except KeyError:
        raise MissingNodeError(f"subtree node level={plan[0]} index={plan[1]} is not stored") from None


def _resolve(plans: Sequence[_Plan], reader: NodeReader) -> list[bytes]:
    """Evaluate plans with ONE batched read."""
    keys: set[NodeKey] = set()
    for plan in plans:
        _collect(plan, keys)
    nodes = reader.get_nodes(sorted(keys)) if keys else {}
    return [_evaluate(plan, nodes) for plan in plans]


def perfect_keys(size: int) -> list[NodeKey]:
    """Perfect subtrees covering [0, size), largest first (one per set bit of size)."""
    keys: list[NodeKey] = []
    start = 0
    for level in range(size.bit_length() - 1, -1, -1):
        if size >> level & 1:
            keys.append((level, start >> level))
            start += 1 << level
    return keys


def _check_size(size: int, what: str) -> None:
    if not 0 <= size <= MAX_TREE_SIZE:
        raise TreeSizeError(f"{what} {size} is outside 0..{MAX_TREE_SIZE}")


def root_at(size: int, reader: NodeReader) -> bytes:
    """MTH(D[size]) from stored nodes (O(log n) nodes, one read)."""
    _check_size(size, "tree size")
    if size == 0:
        return EMPTY_ROOT
    return _resolve([_plan(0, size)], reader)[0]


# --- RFC 9162 §2.1.3.1 inclusion proof generation ---------------------------------


def _inclusion_plans(index: int, size: int) -> list[_Plan]:
    # PATH(m, D[n]) = PATH(m, D[0:k]) : MTH(D[k:n])   if m < k
    #              = PATH(m - k, D[k:n]) : MTH(D[0:k]) if m >= k
    # The sibling is appended *after* the deeper path, so siblings found top-down
    # are emitted in reverse.
    siblings: list[_Plan] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            siblings.append(_plan(lo + k, hi))
            hi = lo + k
        else:
            siblings.append(_plan(lo, lo + k))
            lo = lo + k
    siblings.reverse()
    return siblings


def inclusion_proof(index: int, size: int, reader: NodeReader) -> list[bytes]:
    """PATH(index, D[size]) (RFC 9162 §2.1.3.1); needs 0 <= index < size."""
    _check_size(size, "tree size")
    if not 0 <= index < size:
        raise TreeSizeError(f"leaf index {index} is not below tree size {size}")
    return _resolve(_inclusion_plans(index, size), reader)


# --- RFC 9162 §2.1.4.1 consistency proof generation -------------------------------


def _consistency_plans(m: int, n: int) -> list[_Plan]:
    # SUBPROOF(m, D[n], b): if m = n: {} when b is true, {MTH(D[m])} otherwise;
    # else with k: m <= k -> SUBPROOF(m, D[0:k], b) : MTH(D[k:n])
    #              m > k  -> SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])
    siblings: list[_Plan] = []
    lo, hi, b = 0, n, True
    while m != hi:
        k = _split(hi - lo)
        if m <= lo + k:
            siblings.append(_plan(lo + k, hi))
            hi = lo + k
        else:
            siblings.append(_plan(lo, lo + k))
            lo, b = lo + k, False
    head: list[_Plan] = [] if b else [_plan(lo, hi)]
    return head + siblings[::-1]


def consistency_proof(m: int, n: int, reader: NodeReader) -> list[bytes]:
    """PROOF(m, D[n]) (RFC 9162 §2.1.4.1); needs 0 < m <= n (empty when m = n)."""
    _check_size(n, "tree size")
    if not 0 < m <= n:
        raise TreeSizeError(f"consistency proof needs 0 < m <= n, got m={m} n={n}")
    return _resolve(_consistency_plans(m, n), reader)


# --- append: the frontier (compact range of [0, size)) -----------------------------


@dataclass(frozen=True, slots=True)
class Frontier:
    """Hashes of the perfect subtrees covering [0, size), largest first.

    This is everything needed to append: a new leaf completes parents only
    along the right edge, whose left siblings are exactly these nodes.
    """

    size: int
    hashes: tuple[bytes, ...]

    @classmethod
    def empty(cls) -> Frontier:
        return cls(0, ())

    @classmethod
    def load(cls, size: int, reader: NodeReader) -> Frontier:
        """Rebuild from a store (one read of O(log n) nodes)."""
        _check_size(size, "tree size")
        keys = perfect_keys(size)
        nodes = reader.get_nodes(keys) if keys else {}
        missing = [key for key in keys if key not in nodes]
        if missing:
            raise MissingNodeError(f"frontier node {missing[0]} of tree size {size} is not stored")
        return cls(size, tuple(nodes[key] for key in keys))

    def root(self) -> bytes:
        """MTH(D[size]): the frontier folded right to left."""
        if not self.hashes:
            return EMPTY_ROOT
        acc = self.hashes[-1]
        for h in reversed(self.hashes[:-1]):
            acc = node_hash(h, acc)
        return acc

    def append(self, leaf_hashes: Iterable[bytes]) -> tuple[Frontier, list[tuple[NodeKey, bytes]]]:
        """Add leaves; return the new frontier and every node that became complete.

        The node list includes the level-0 (leaf) nodes, in creation order.
        """
        levels = [
            size_bit for size_bit in range(self.size.bit_length() - 1, -1, -1) if self.size >> size_bit & 1
        ]
        stack: list[tuple[int, bytes]] = list(zip(levels, self.hashes, strict=True))
        size = self.size
        created: list[tuple[NodeKey, bytes]] = []
        for h in leaf_hashes:
            if len(h) != HASH_SIZE:
                raise HashLengthError(f"leaf hash is {len(h)} bytes, not {HASH_SIZE}")
            size += 1
            created.append(((0, size - 1), h))
            stack.append((0, h))
            while len(stack) >= 2 and stack[-1][0] == stack[-2][0]:
                level, right = stack.pop()
                _, left = stack.pop()
                parent = node_hash(left, right)
                created.append(((level + 1, (size >> (level + 1)) - 1), parent))
                stack.append((level + 1, parent))
        _check_size(size, "tree size")
        return Frontier(size, tuple(h for _, h in stack)), created


class MemoryTree:
    """An in-memory :class:`NodeReader` (tests, offline verifiers, exports)."""

    def __init__(self) -> None:
        self._nodes: dict[NodeKey, bytes] = {}
        self._frontier = Frontier.empty()

    @property
    def size(self) -> int:
        return self._frontier.size

    def append_leaf_hashes(self, hashes: Iterable[bytes]) -> None:
        self._frontier, created = self._frontier.append(hashes)
        self._nodes.update(created)

    def append_entries(self, entries: Iterable[bytes]) -> None:
        self.append_leaf_hashes(leaf_hash(e) for e in entries)

    def root(self) -> bytes:
        return self._frontier.root()

    def get_nodes(self, keys: list[NodeKey]) -> dict[NodeKey, bytes]:
        return {key: self._nodes[key] for key in keys if key in self._nodes}


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
    _check_size(size, "tree size")
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
    _check_size(size2, "second tree size")
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
