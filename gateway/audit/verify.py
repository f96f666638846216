"""Offline verification of an audit log: the one workflow behind ``liaison audit verify`` and bundles.

Pure: bytes and values in (the signed directory, signed tree heads, the exact
leaf bytes, proofs), a :class:`LogReport` or ``None`` out, or a precise
:class:`~exchange.core.errors.LiaisonError`. Fetching the evidence is the
caller's job (the CLI asks the gateway, :mod:`gateway.audit.bundle` reads a
file); what a verifier in the other country runs with nothing but exported
data and the directory their embassy pinned.

:func:`trusted_directory` is the one copy of the pinned-directory trust rule.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from exchange.core.directory import (
    SignedDirectory,
    TrustAnchor,
    counting_authorities,
    directory_digest,
    verify_directory,
)
from exchange.core.model import Directory
from gateway.audit.errors import MissingCosignatureError, MissingProofError, ProofError, TreeSizeError
from gateway.audit.merkle import leaf_hash, root_from_leaf_hashes, verify_consistency, verify_inclusion
from gateway.audit.treehead import SignedTreeHead, verify_cosignature

__all__ = [
    "LogEvidence",
    "LogReport",
    "require_cosignatures",
    "trusted_directory",
    "verify_audit_log",
    "verify_further_proofs",
    "verify_log",
    "verify_record_inclusion",
]


def trusted_directory(served: bytes, pinned: bytes | None = None) -> SignedDirectory:
    """The signed directory ``served`` (by a gateway, in a bundle), verified by the trust rule.

    With ``pinned`` (the directory the reader's embassy keeps), ``served`` must
    carry m-of-n signatures of the pinned authorities: stops a gateway or a
    bundle that brings its own authorities. Without a pin this only proves the
    directory is consistent with itself; its digest (in the report) is what the
    reader compares with their pinned copy.
    """
    own = SignedDirectory.from_bytes(served)
    anchor = SignedDirectory.from_bytes(pinned).directory if pinned is not None else own.directory
    return verify_directory(served, trusted=None, anchor=TrustAnchor.from_directory(anchor))


@dataclass(frozen=True)
class LogEvidence:
    """What a verifier holds: heads, the records they cover, and proofs (index -> inclusion proof).

    ``source`` names where the evidence came from in error messages ("bundle", "log").
    """

    heads: Sequence[SignedTreeHead]
    entries: Sequence[tuple[int, bytes]]
    consistency: Mapping[tuple[int, int], Sequence[bytes]]
    inclusion: Mapping[int, Sequence[bytes]] = field(default_factory=dict)
    source: str = "log"


@dataclass(frozen=True)
class LogReport:
    """What an offline check established."""

    size: int
    gateway: str
    head_sizes: tuple[int, ...]
    directory_version: int
    directory_digest: str
    directory_signed_by: tuple[str, ...]
    cosigned: tuple[tuple[int, tuple[str, ...]], ...]  # (head size, witnesses) for co-signed heads
    inclusion_proofs: int = 0

    def summary(self) -> str:
        sizes = ", ".join(str(s) for s in self.head_sizes)
        witnesses = (
            "; ".join(f"size {s} by {', '.join(w)}" for s, w in self.cosigned) or "no witness co-signatures"
        )
        return (
            f"{self.size} records, {len(self.head_sizes)} tree heads (sizes {sizes}) signed by "
            f"{self.gateway}, consistent; co-signed: {witnesses}; directory v{self.directory_version} "
            f"digest {self.directory_digest} signed by {', '.join(self.directory_signed_by)}"
        )


def _check_contiguous(entries: Sequence[tuple[int, bytes]]) -> None:
    for position, (index, _) in enumerate(entries):
        if index != position:
            raise TreeSizeError(f"log entries are not contiguous: expected index {position}, found {index}")


def _check_heads(ordered: Sequence[SignedTreeHead], leaves: Sequence[bytes], directory: Directory) -> None:
    for head in ordered:
        head.verify(directory)
        size = head.tree_head.size
        if size > len(leaves):
            raise TreeSizeError(f"tree head of size {size} covers more than the {len(leaves)} entries given")
        if root_from_leaf_hashes(leaves[:size]) != head.tree_head.root:
            raise ProofError(f"entries 0..{size - 1} do not hash to the signed root of tree size {size}")


def verify_log(
    entries: Sequence[tuple[int, bytes]],
    heads: Sequence[SignedTreeHead],
    directory: Directory,
    consistency: Mapping[tuple[int, int], Sequence[bytes]] | None = None,
) -> None:
    """Every head is signed by the gateway and matches the root of the entries it covers.

    Steps (1)-(3) of :func:`verify_audit_log`, and (4) only for the proofs given.
    """
    _check_contiguous(entries)
    ordered = sorted(heads, key=lambda h: h.tree_head.size)
    _check_heads(ordered, [leaf_hash(entry) for _, entry in entries], directory)
    for earlier, later in itertools.pairwise(ordered):
        m, n = earlier.tree_head.size, later.tree_head.size
        proof = (consistency or {}).get((m, n))
        if proof is not None and 0 < m < n:
            verify_consistency(m, n, proof, earlier.tree_head.root, later.tree_head.root)


def verify_audit_log(evidence: LogEvidence, signed: SignedDirectory) -> LogReport:
    """Check the evidence against ``signed`` (from :func:`trusted_directory`); report or raise.

    The plan (each step raises the first precise failure):
    (0) The directory was verified by the caller with :func:`trusted_directory`.
    (1) Entries are exactly indices 0..n-1: stops a truncated log or a dropped record.
    (2) Each head's gateway signature verifies with the directory's gateway keys:
        stops a forged head.
    (3) Each head's root equals the RFC 9162 root of its first ``size`` entries:
        stops an edited record; and no head covers more entries than given.
    (4) No entry lies beyond the newest head: what is reported is what is signed.
    (5) Each pair of consecutive heads has a consistency proof, and it verifies:
        stops a fork between heads (history rewritten after a head was seen).
    (6) Every further consistency proof given between two heads verifies.
    (7) Every inclusion proof given proves its entry into the newest head's root:
        stops a gateway whose proof service disagrees with its records.
    (8) Every co-signature verifies with its witness's key in the directory:
        stops a claimed witness that never co-signed.
    """
    directory = signed.directory
    heads = sorted(evidence.heads, key=lambda h: h.tree_head.size)
    if not heads:
        raise TreeSizeError("no signed tree head to verify the log against")
    newest = heads[-1].tree_head
    by_size = {h.tree_head.size: h.tree_head for h in heads}
    # (1):
    _check_contiguous(evidence.entries)
    leaves = [leaf_hash(entry) for _, entry in evidence.entries]
    # (2), (3):
    _check_heads(heads, leaves, directory)
    # (4):
    if len(leaves) != newest.size:
        raise TreeSizeError(
            f"{evidence.source} holds {len(leaves)} records, its newest head covers {newest.size}"
        )
    # (5):
    consecutive = [(a.tree_head.size, b.tree_head.size) for a, b in itertools.pairwise(heads)]
    for m, n in consecutive:
        if 0 < m < n:
            proof = evidence.consistency.get((m, n))
            if proof is None:
                raise MissingProofError(f"no consistency proof between sizes {m} and {n}")
            verify_consistency(m, n, proof, by_size[m].root, by_size[n].root)
    # (6), (7):
    further = {k: p for k, p in evidence.consistency.items() if k not in consecutive}
    verify_further_proofs(heads, evidence.entries, further, evidence.inclusion)
    # (8):
    cosigned: list[tuple[int, tuple[str, ...]]] = []
    for head in heads:
        for c in head.cosignatures:
            verify_cosignature(head, c, directory)
        if head.cosignatures:
            cosigned.append((head.tree_head.size, tuple(sorted({c.witness for c in head.cosignatures}))))
    return LogReport(
        size=newest.size,
        gateway=newest.gateway,
        head_sizes=tuple(h.tree_head.size for h in heads),
        directory_version=signed.version,
        directory_digest=directory_digest(signed),
        directory_signed_by=counting_authorities(signed, directory.authorities),
        cosigned=tuple(cosigned),
        inclusion_proofs=len(evidence.inclusion),
    )


def require_cosignatures(report: LogReport, directory: Directory, witnesses: Sequence[str] = ()) -> int:
    """Step (9), when asked: the verified heads carry the witnesses' co-signatures.

    ``witnesses`` names the authorities that must each have co-signed one of the
    verified heads; empty means "some authority of the directory". Co-signatures
    were verified in step (8). Returns the largest size co-signed by every one
    required (records beyond it are not witnessed yet). Stops a log that passes
    ``audit verify`` with no witness ever having checked it: a gateway alone
    vouching for its own history.
    """
    for w in witnesses:
        if directory.authority(w) is None:
            raise MissingCosignatureError(f"{w} is not an authority of the directory: it cannot co-sign")
    by_witness: dict[str, int] = {}
    for size, names in report.cosigned:
        for name in names:
            by_witness[name] = max(size, by_witness.get(name, 0))
    if not witnesses:
        if not by_witness:
            raise MissingCosignatureError(
                f"none of the {len(report.head_sizes)} verified tree heads is co-signed by a witness"
            )
        return max(by_witness.values())
    missing = [w for w in witnesses if w not in by_witness]
    if missing:
        raise MissingCosignatureError(f"no verified tree head is co-signed by {', '.join(missing)}")
    return min(by_witness[w] for w in witnesses)


def verify_further_proofs(
    heads: Sequence[SignedTreeHead],
    entries: Sequence[tuple[int, bytes]],
    consistency: Mapping[tuple[int, int], Sequence[bytes]],
    inclusion: Mapping[int, Sequence[bytes]],
) -> None:
    """Steps (6) and (7) of :func:`verify_audit_log` on their own.

    For proofs a verifier fetches only once the records and heads held (the CLI
    asks the gateway for them after :func:`verify_audit_log`, so a damaged log is
    reported as such rather than as a refused proof). ``entries`` must already be
    contiguous from index 0.
    """
    ordered = sorted(heads, key=lambda h: h.tree_head.size)
    if not ordered:
        raise TreeSizeError("no signed tree head to verify the proofs against")
    newest = ordered[-1].tree_head
    by_size = {h.tree_head.size: h.tree_head for h in ordered}
    # (6): proofs between two heads other than consecutive ones (oldest -> newest).
    for (m, n), proof in sorted(consistency.items()):
        if m in by_size and n in by_size and 0 < m < n:
            verify_consistency(m, n, proof, by_size[m].root, by_size[n].root)
    # (7):
    for index, proof in sorted(inclusion.items()):
        if not 0 <= index < len(entries):
            raise TreeSizeError(f"inclusion proof for index {index} outside the {len(entries)} records")
        verify_inclusion(leaf_hash(entries[index][1]), index, newest.size, proof, newest.root)


def verify_record_inclusion(
    entry: bytes,
    index: int,
    size: int,
    proof: Sequence[bytes],
    root: bytes,
    *,
    signed: tuple[SignedTreeHead, Directory] | None,
) -> bytes:
    """One record's inclusion in the tree of ``size``; returns its leaf hash.

    ``root`` is the root the gateway served with the proof; ``signed`` the signed
    head of that size with the directory to check it by, when a head is stored
    (None: the root is unsigned and the caller must say so).
    (1) The head's gateway signature verifies: stops a forged head.
    (2) The served root is the signed one: stops a proof against a root the
        gateway never signed.
    (3) The RFC 9162 inclusion proof of the record's leaf hash leads to the root.
    """
    if signed is not None:
        head, directory = signed
        # (1):
        head.verify(directory)
        # (2):
        if root != head.tree_head.root:
            raise ProofError(f"gateway's root for size {size} differs from its signed tree head")
    # (3):
    leaf = leaf_hash(entry)
    verify_inclusion(leaf, index, size, proof, root)
    return leaf
