"""The exception tree of the audit log.

Every failure of the Merkle code, the proof verifiers and the audit stores is
one leaf of :class:`AuditError`, itself a :class:`~exchange.core.errors.LiaisonError`
so the services map it to one gRPC status. Messages name sizes, indices and
which check failed; they never carry audit record content.

Database failures that are not about the log itself (disk full, connection
lost) are reported as :class:`exchange.core.errors.StoreError`, not here.
"""

from __future__ import annotations

from exchange.core.merkle import (
    AuditError,
    ConsistencyProofError,
    HashLengthError,
    InclusionProofError,
    ProofError,
    TreeSizeError,
)

__all__ = [
    "AuditError",
    "ConsistencyProofError",
    "CosignatureConflictError",
    "EntryNotFoundError",
    "HashLengthError",
    "InclusionProofError",
    "MetadataError",
    "MissingCosignatureError",
    "MissingNodeError",
    "MissingProofError",
    "PageTokenError",
    "ProofError",
    "TreeHeadConflictError",
    "TreeHeadNotFoundError",
    "TreeSizeError",
]


class MissingProofError(ProofError):
    """A consistency proof between two signed tree heads was not supplied (a fork could hide there)."""


class MissingCosignatureError(ProofError):
    """A verifier asked for witnesses' co-signatures and the verified heads lack them."""


class MissingNodeError(AuditError):
    """The store lacks a subtree hash that a complete tree of that size must have (store damaged)."""

    grpc_status = "DATA_LOSS"


class EntryNotFoundError(AuditError):
    """No audit entry at that index."""

    grpc_status = "NOT_FOUND"


class TreeHeadNotFoundError(AuditError):
    """No signed tree head stored for that size."""

    grpc_status = "NOT_FOUND"


class TreeHeadConflictError(AuditError):
    """A different signed tree head is already stored for that size (first one wins)."""

    grpc_status = "ALREADY_EXISTS"


class CosignatureConflictError(AuditError):
    """The witness already cosigned that size with different bytes (first one wins)."""

    grpc_status = "ALREADY_EXISTS"


class MetadataError(AuditError):
    """Entry metadata names an unknown column, has a wrong type, or an entry is oversize."""


class PageTokenError(AuditError):
    """A query page token is malformed or belongs to the other sort order."""
