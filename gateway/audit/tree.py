"""The gateway's side of the RFC 9162 tree: stored subtrees, appends, roots and proof generation.

Stores keep the hash of every *perfect subtree* once it is complete: node
``(level, index)`` covers leaves ``[index * 2**level, (index + 1) * 2**level)``;
level 0 holds the leaf hashes. Such nodes never change after they are
written, so any ``MTH(D[a:b])`` that an RFC proof needs decomposes into
O(log n) stored nodes, and one batched :meth:`NodeReader.get_nodes` call
serves a whole proof or root. :class:`Frontier` is what an append needs.

Pure code on top of :mod:`gateway.audit.merkle`'s hashing. What it does not
do: verify proofs (:mod:`gateway.audit.merkle`), store nodes (the stores),
or sign tree heads.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeAlias

from gateway.audit.errors import HashLengthError, MissingNodeError, TreeSizeError
from gateway.audit.merkle import EMPTY_ROOT, HASH_SIZE, check_tree_size, leaf_hash, node_hash, split_point

__all__ = [
    "Frontier",
    "MemoryTree",
    "NodeKey",
    "NodeReader",
    "consistency_proof",
    "inclusion_proof",
    "inclusion_proofs",
    "perfect_keys",
    "root_at",
]

NodeKey: TypeAlias = tuple[int, int]
"""``(level, index)`` of a perfect subtree."""


class NodeReader(Protocol):
    """Where the perfect-subtree hashes live (a store, or :class:`MemoryTree`)."""

    def get_nodes(self, keys: list[NodeKey]) -> dict[NodeKey, bytes]:
        """Return the stored hash for each key that exists (absent keys are left out)."""
        ...


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
    k = split_point(n)
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


def root_at(size: int, reader: NodeReader) -> bytes:
    """MTH(D[size]) from stored nodes (O(log n) nodes, one read)."""
    check_tree_size(size, "tree size")
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
        k = split_point(hi - lo)
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
    check_tree_size(size, "tree size")
    if not 0 <= index < size:
        raise TreeSizeError(f"leaf index {index} is not below tree size {size}")
    return _resolve(_inclusion_plans(index, size), reader)


def inclusion_proofs(indices: Sequence[int], size: int, reader: NodeReader) -> list[list[bytes]]:
    """PATH(i, D[size]) for each of ``indices``, with ONE batched read (a commit's records)."""
    check_tree_size(size, "tree size")
    plans: list[list[_Plan]] = []
    for index in indices:
        if not 0 <= index < size:
            raise TreeSizeError(f"leaf index {index} is not below tree size {size}")
        plans.append(_inclusion_plans(index, size))
    flat = _resolve([p for ps in plans for p in ps], reader)
    out: list[list[bytes]] = []
    for ps in plans:
        out.append(flat[: len(ps)])
        flat = flat[len(ps) :]
    return out


# --- RFC 9162 §2.1.4.1 consistency proof generation -------------------------------


def _consistency_plans(m: int, n: int) -> list[_Plan]:
    # SUBPROOF(m, D[n], b): if m = n: {} when b is true, {MTH(D[m])} otherwise;
    # else with k: m <= k -> SUBPROOF(m, D[0:k], b) : MTH(D[k:n])
    #              m > k  -> SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])
    siblings: list[_Plan] = []
    lo, hi, b = 0, n, True
    while m != hi:
        k = split_point(hi - lo)
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
    check_tree_size(n, "tree size")
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
        check_tree_size(size, "tree size")
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
        check_tree_size(size, "tree size")
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
