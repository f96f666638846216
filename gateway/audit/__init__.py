"""Merkle audit log: pure tree code, tree heads, proofs and stores."""
