"""gateway.audit.verify: the one verification workflow, driven with values (no gateway, no file).

The bundle verifier and `liaison audit verify` both end here; these tables
show each step raising its precise error for the attack it names.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable

import pytest

from exchange.core.errors import LiaisonError
from exchange.core.model import Authority, Directory
from gateway.audit.errors import (
    ConsistencyProofError,
    InclusionProofError,
    MissingCosignatureError,
    MissingProofError,
    ProofError,
    TreeSizeError,
)
from gateway.audit.tree import MemoryTree, consistency_proof, inclusion_proof
from gateway.audit.verify import (
    LogEvidence,
    LogReport,
    require_cosignatures,
    trusted_directory,
    verify_audit_log,
    verify_further_proofs,
    verify_record_inclusion,
)
from tests.unit.test_bundle import World, make_world
from tests.unit.test_bundle import _head as signed_head

SIZES = (3, 7, 11)


@pytest.fixture(scope="module")
def world() -> World:
    return make_world()


def _tree(w: World) -> MemoryTree:
    tree = MemoryTree()
    tree.append_entries(w.entries)
    return tree


def _evidence(w: World) -> LogEvidence:
    tree = _tree(w)
    return LogEvidence(
        heads=[signed_head(w, s) for s in SIZES],
        entries=list(enumerate(w.entries)),
        consistency={(a, b): consistency_proof(a, b, tree) for a, b in itertools.pairwise(SIZES)},
        inclusion={i: inclusion_proof(i, 11, tree) for i in (0, 5, 10)},
    )


def test_evidence_verifies(world: World) -> None:
    report = verify_audit_log(_evidence(world), trusted_directory(world.signed_directory))
    assert (report.size, report.head_sizes, report.inclusion_proofs) == (11, SIZES, 3)
    assert report.directory_signed_by == ("ru-embassy", "tj-embassy")


def _edit(entries: list[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
    return [*entries[:2], (2, entries[2][1] + b"x"), *entries[3:]]


TAMPERS: list[tuple[str, Callable[[LogEvidence], LogEvidence], type[LiaisonError], str]] = [
    (
        "record-dropped",
        lambda e: dataclasses.replace(e, entries=[*e.entries[:4], *e.entries[5:]]),
        TreeSizeError,
        "not contiguous",
    ),
    (
        "record-edited",
        lambda e: dataclasses.replace(e, entries=_edit(list(e.entries))),
        ProofError,
        "signed root",
    ),
    (
        "records-beyond-newest-head",
        lambda e: dataclasses.replace(e, heads=list(e.heads)[:2], consistency={}),
        TreeSizeError,
        "log holds 11 records, its newest head covers 7",
    ),
    (
        "consistency-missing",
        lambda e: dataclasses.replace(e, consistency={}),
        MissingProofError,
        "no consistency proof between sizes 3 and 7",
    ),
    (
        "consistency-wrong",
        lambda e: dataclasses.replace(
            e, consistency={(3, 7): [bytes(32)] * 3, (7, 11): e.consistency[(7, 11)]}
        ),
        ConsistencyProofError,
        "between sizes 3 and 7",
    ),
    (
        "inclusion-wrong",
        lambda e: dataclasses.replace(e, inclusion={5: e.inclusion[0]}),
        InclusionProofError,
        "index 5",
    ),
    (
        "inclusion-outside",
        lambda e: dataclasses.replace(e, inclusion={11: e.inclusion[0]}),
        TreeSizeError,
        "index 11",
    ),
]


@pytest.mark.parametrize(("tamper", "error", "reason"), [t[1:] for t in TAMPERS], ids=[t[0] for t in TAMPERS])
def test_each_step_raises_its_error(
    world: World,
    tamper: Callable[[LogEvidence], LogEvidence],
    error: type[LiaisonError],
    reason: str,
) -> None:
    with pytest.raises(error, match=reason):
        verify_audit_log(tamper(_evidence(world)), trusted_directory(world.signed_directory))


def test_further_proofs_are_checked_on_their_own(world: World) -> None:
    e, tree = _evidence(world), _tree(world)
    verify_further_proofs(e.heads, e.entries, {(3, 11): consistency_proof(3, 11, tree)}, e.inclusion)
    with pytest.raises(ConsistencyProofError):
        verify_further_proofs(e.heads, e.entries, {(3, 11): consistency_proof(3, 7, tree)}, {})


def test_record_inclusion_binds_the_served_root_to_the_signedsigned_head(world: World) -> None:
    tree, head = _tree(world), signed_head(world, 11)
    proof, root, entry = inclusion_proof(4, 11, tree), head.tree_head.root, world.entries[4]
    signed = (head, world.directory)
    assert verify_record_inclusion(entry, 4, 11, proof, root, signed=signed)
    assert verify_record_inclusion(entry, 4, 11, proof, root, signed=None)  # unsigned: root only
    with pytest.raises(ProofError, match="differs from its signed tree head"):
        verify_record_inclusion(entry, 4, 11, proof, bytes(32), signed=signed)
    with pytest.raises(InclusionProofError):
        verify_record_inclusion(world.entries[5], 4, 11, proof, root, signed=signed)


def test_trusted_directory_with_and_without_a_pin(world: World) -> None:
    assert trusted_directory(world.signed_directory).directory == world.directory
    assert trusted_directory(world.signed_directory, world.signed_directory).directory == world.directory
    with pytest.raises(LiaisonError):
        trusted_directory(world.signed_directory[:-1] + bytes([world.signed_directory[-1] ^ 1]))


# --- step (9): --require-cosign ---------------------------------------------------------------


def _cosign_report(cosigned: tuple[tuple[int, tuple[str, ...]], ...]) -> LogReport:
    return LogReport(
        size=10,
        gateway="gw",
        head_sizes=(4, 8, 10),
        directory_version=1,
        directory_digest="d",
        directory_signed_by=("a",),
        cosigned=cosigned,
    )


def _authorities_directory() -> Directory:
    return Directory(
        deployment="test",
        version=1,
        issued_ms=1,
        offices=(),
        gateways=(),
        authorities=(Authority(id="ru-embassy", keys=()), Authority(id="tj-embassy", keys=())),
        threshold=1,
    )


@pytest.mark.parametrize(
    ("cosigned", "witnesses", "witnessed"),
    [
        pytest.param(((8, ("tj-embassy",)),), (), 8, id="any-witness"),
        pytest.param(((4, ("tj-embassy",)), (8, ("ru-embassy",))), ("tj-embassy",), 4, id="named-witness"),
        pytest.param(
            ((4, ("tj-embassy",)), (8, ("ru-embassy", "tj-embassy"))),
            ("ru-embassy", "tj-embassy"),
            8,
            id="both-witnesses",
        ),
    ],
)
def test_require_cosignatures_returns_the_witnessed_size(
    cosigned: tuple[tuple[int, tuple[str, ...]], ...], witnesses: tuple[str, ...], witnessed: int
) -> None:
    assert require_cosignatures(_cosign_report(cosigned), _authorities_directory(), witnesses) == witnessed


@pytest.mark.parametrize(
    ("cosigned", "witnesses", "match"),
    [
        pytest.param((), (), "none of the 3 verified tree heads", id="no-cosignature-at-all"),
        pytest.param(
            ((8, ("tj-embassy",)),), ("ru-embassy",), "co-signed by ru-embassy", id="not-that-witness"
        ),
        pytest.param(((8, ("tj-embassy",)),), ("nobody",), "not an authority", id="not-an-authority"),
    ],
)
def test_require_cosignatures_refuses(
    cosigned: tuple[tuple[int, tuple[str, ...]], ...], witnesses: tuple[str, ...], match: str
) -> None:
    with pytest.raises(MissingCosignatureError, match=match):
        require_cosignatures(_cosign_report(cosigned), _authorities_directory(), witnesses)
