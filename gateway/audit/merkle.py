"""RFC 9162 Merkle hashing and proof verification: :mod:`exchange.core.merkle`, re-exported.

The verifiers moved into the pure core so that offices check the gateway's
log proofs with the same code as the other embassy (ADR 0013). Proof
*generation* lives in :mod:`gateway.audit.tree`.
"""

from __future__ import annotations

from exchange.core.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    MAX_PROOF_LEN,
    MAX_TREE_SIZE,
    check_tree_size,
    leaf_hash,
    node_hash,
    root_from_leaf_hashes,
    split_point,
    verify_consistency,
    verify_inclusion,
)

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "MAX_PROOF_LEN",
    "MAX_TREE_SIZE",
    "check_tree_size",
    "leaf_hash",
    "node_hash",
    "root_from_leaf_hashes",
    "split_point",
    "verify_consistency",
    "verify_inclusion",
]
