"""Offline checks of an exported log against signed tree heads.

Pure: records (index, exact leaf bytes), tree heads and the directory in;
``None`` out or a precise exception. What a verifier in the other country
runs with nothing but exported data and the gateway's public keys.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

from exchange.core.model import Directory
from gateway.audit.errors import ProofError, TreeSizeError
from gateway.audit.merkle import leaf_hash, root_from_leaf_hashes, verify_consistency
from gateway.audit.treehead import SignedTreeHead

__all__ = ["verify_log"]


def verify_log(
    entries: Sequence[tuple[int, bytes]],
    heads: Sequence[SignedTreeHead],
    directory: Directory,
    consistency: Mapping[tuple[int, int], Sequence[bytes]] | None = None,
) -> None:
    """Every head is signed by the gateway and matches the root of the entries it covers.

    1. Entries are exactly indices 0..n-1 (a gap or a repeat is a truncated or forked log).
    2. Each head's gateway signature verifies (a forged head).
    3. Each head's root equals the RFC 9162 root of its first ``size`` entries (a rewritten entry).
    4. Consecutive heads are consistent when proofs are given (a fork between heads).
    """
    for position, (index, _) in enumerate(entries):
        if index != position:
            raise TreeSizeError(f"log entries are not contiguous: expected index {position}, found {index}")
    leaves = [leaf_hash(entry) for _, entry in entries]
    ordered = sorted(heads, key=lambda h: h.tree_head.size)
    for head in ordered:
        head.verify(directory)
        size = head.tree_head.size
        if size > len(leaves):
            raise TreeSizeError(f"tree head of size {size} covers more than the {len(leaves)} entries given")
        if root_from_leaf_hashes(leaves[:size]) != head.tree_head.root:
            raise ProofError(f"entries 0..{size - 1} do not hash to the signed root of tree size {size}")
    if consistency:
        for earlier, later in itertools.pairwise(ordered):
            m, n = earlier.tree_head.size, later.tree_head.size
            proof = consistency.get((m, n))
            if proof is not None and 0 < m < n:
                verify_consistency(m, n, proof, earlier.tree_head.root, later.tree_head.root)
