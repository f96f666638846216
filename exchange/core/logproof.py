"""The gateway's proof that it logged a message, and the offices' checks of it (ADR 0013).

A STAMPED receipt says "audited, then routed"; its ``LogProof`` makes that
checkable: the audit record (the Merkle leaf input), the tree head the gateway
signed for the group commit that wrote it, the RFC 9162 inclusion proof of
the record into that head, and a consistency proof that links the head with
the last one the gateway showed the receiving office.

Pure: frozen dataclasses and functions that return None or raise one precise
error; no I/O, no ``await``. What it does not do: keep the heads an office has
seen (``exchange.office.heads``), verify the stamp itself (``seal`` and
``receipts`` do), or generate proofs (``gateway.audit.tree``).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Final

from exchange.core import primitives
from exchange.core.envelope import Signature
from exchange.core.errors import MissingSignatureError, SignatureError
from exchange.core.merkle import (
    HASH_SIZE,
    MAX_PROOF_LEN,
    AuditError,
    ConsistencyProofError,
    InclusionProofError,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)
from exchange.core.model import Algorithm, Directory

__all__ = [
    "ACCEPTED_VERDICT",
    "MAX_HEAD_SIGNATURES",
    "MAX_LOG_PROOF_BYTES",
    "MAX_LOG_RECORD_BYTES",
    "MAX_TREE_HEAD_BYTES",
    "TREE_HEAD_CONTEXT",
    "ForkError",
    "LogHead",
    "LogProof",
    "LoggedClaim",
    "check_inclusion",
    "check_link",
    "verify_head",
    "verify_head_signatures",
]

# The signing context of tree heads (``gateway.audit.treehead`` signs with the same).
TREE_HEAD_CONTEXT: Final = "tree-head"
# Bounds checked by the codec before parsing.
MAX_LOG_RECORD_BYTES: Final = 64 * 1024  # the audit store's own record limit
MAX_TREE_HEAD_BYTES: Final = 512
MAX_HEAD_SIGNATURES: Final = 4
MAX_LOG_PROOF_BYTES: Final = MAX_LOG_RECORD_BYTES + 2 * MAX_PROOF_LEN * (HASH_SIZE + 2) + 16 * 1024
# ``Verdict.ACCEPTED`` of the audit record (gateway.audit.record; liaison.v1.Verdict).
ACCEPTED_VERDICT: Final = 1


class ForkError(ConsistencyProofError):
    """Two tree heads of one gateway cannot both be of the same log (a fork or a rewrite)."""


@dataclass(frozen=True)
class LogHead:
    """A signed tree head as it travelled: ``head_bytes`` are what the signatures cover."""

    size: int
    root: bytes
    timestamp_ms: int
    gateway: str
    head_bytes: bytes
    signatures: tuple[Signature, ...]

    def __post_init__(self) -> None:
        if self.size < 0 or len(self.root) != HASH_SIZE:
            raise ValueError("tree head needs size >= 0 and a 32-byte root")


@dataclass(frozen=True)
class LoggedClaim:
    """What an audit record says about the message it logs (parsed by the codec)."""

    verdict: int
    message_id: str
    sender: str
    header_digest: bytes


@dataclass(frozen=True)
class LogProof:
    """That ``record`` is leaf ``leaf_index`` of the log whose signed head is ``head``.

    ``linked_size`` names another head the gateway showed this office (0: none)
    and ``consistency`` is the RFC 9162 proof between the smaller and the larger.
    """

    record: bytes
    claim: LoggedClaim
    leaf_index: int
    head: LogHead
    inclusion: tuple[bytes, ...]
    linked_size: int = 0
    consistency: tuple[bytes, ...] = ()


def verify_head(head: LogHead, directory: Directory) -> None:
    """The head is signed by the gateway it names, Ed25519 at least, over its exact bytes.

    Stops: a tree head made up by anyone without the gateway's key.
    """
    verify_head_signatures(head.gateway, head.signatures, head.head_bytes, directory)


def verify_head_signatures(
    gateway_id: str, signatures: tuple[Signature, ...], head_bytes: bytes, directory: Directory
) -> None:
    """Every signature over ``head_bytes`` verifies with the named gateway's keys; Ed25519 at least.

    The one check of a tree head's signatures (``gateway.audit.treehead`` uses it too).
    """
    gateway = directory.gateway(gateway_id)
    if gateway is None:
        raise SignatureError(f"tree head names unknown gateway {gateway_id!r}")
    if not any(s.algorithm is Algorithm.ED25519 for s in signatures):
        raise MissingSignatureError("tree head carries no Ed25519 signature")
    for sig in signatures:
        key = gateway.key(sig.key_id)
        if key is None or key.algorithm is not sig.algorithm:
            raise SignatureError(f"tree head signed by unknown key {sig.key_id}")
        primitives.verify(key.algorithm, key.public, sig.value, head_bytes, TREE_HEAD_CONTEXT)


def check_inclusion(
    proof: LogProof,
    *,
    message_id: str,
    header_digest: bytes,
    log_index: int,
    gateway: str,
    directory: Directory,
) -> None:
    """Raise unless ``proof`` shows the ACCEPTED record of this envelope in ``gateway``'s log.

    The caller has checked the stamp (signed by ``gateway``, naming ``message_id``,
    ``header_digest`` and ``log_index``). The plan:

    (1) the head is the stamping gateway's, signed with its keys;
    (2) the proven leaf is the one the stamp names;
    (3) the record is an ACCEPTED record of this message id and header digest;
    (4) the record's leaf hash proves into the head's root at that index (RFC 9162 §2.1.3.2).
    """
    head = proof.head
    # (1): Stops: a head signed by another gateway, or by nobody.
    if head.gateway != gateway:
        raise InclusionProofError(f"message {message_id}: tree head of {head.gateway}, stamp of {gateway}")
    verify_head(head, directory)
    # (2): Stops: a proof of some other leaf passed off for the stamp's log index.
    if proof.leaf_index != log_index:
        raise InclusionProofError(
            f"message {message_id}: proof of leaf {proof.leaf_index}, stamp names {log_index}"
        )
    # (3): Stops: a proof of another message's (or a rejection's) record.
    claim = proof.claim
    if claim.verdict != ACCEPTED_VERDICT or claim.message_id != message_id:
        raise InclusionProofError(f"message {message_id}: the proven record is not its acceptance")
    if not hmac.compare_digest(claim.header_digest, header_digest):
        raise InclusionProofError(f"message {message_id}: the proven record names another header")
    # (4): Stops: a stamp with a log index that is not in the log (or a different record there).
    verify_inclusion(leaf_hash(proof.record), log_index, head.size, proof.inclusion, head.root)


def check_link(known: LogHead, new: LogHead, proof: tuple[bytes, ...]) -> None:
    """Raise ``ForkError`` unless ``known`` and ``new`` (both verified) are heads of one log.

    The plan: (1) same gateway; (2) same size needs the same root; (3) otherwise
    the consistency proof from the smaller to the larger verifies (RFC 9162
    §2.1.4.2). Stops: a gateway that shows an office one history and then another.
    """
    if known.gateway != new.gateway:
        raise ForkError(f"heads of two gateways ({known.gateway}, {new.gateway}) compared")
    if known.size == new.size:
        if not hmac.compare_digest(known.root, new.root):
            raise ForkError(f"two tree heads of size {new.size} with different roots")
        return
    older, newer = (known, new) if known.size < new.size else (new, known)
    if older.size == 0:
        return  # everything extends the empty tree
    try:
        verify_consistency(older.size, newer.size, proof, older.root, newer.root)
    except AuditError as e:  # a malformed proof is no link either
        raise ForkError(f"tree heads of sizes {older.size} and {newer.size} are not consistent: {e}") from e
