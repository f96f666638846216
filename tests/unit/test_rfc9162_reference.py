"""The test-only RFC 9162 verifier (tests/rfc9162_reference.py) on published known answers.

Before the reference verifier may judge the gateway's proofs it has to agree
with the Certificate Transparency implementations: the RFC 6962 test roots
and the transparency-dev/merkle proof vectors (tests/vectors/merkle/), both
the happy paths and the refused ones. It must also refuse what is wrong, or
"verified by the reference" would mean nothing.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from gateway.audit.tree import MemoryTree, consistency_proof, inclusion_proof
from tests.rfc9162_reference import (
    ReferenceProofError,
    leaf_hash,
    mth,
    node_hash,
    verify_consistency,
    verify_inclusion,
)
from tests.unit.test_merkle import LEAVES, ROOTS

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "merkle"


def _b64(s: str) -> bytes:
    return base64.b64decode(s)


def _load(name: str) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads((VECTORS / name).read_text())
    return data


def _id(case: dict[str, Any]) -> str:
    return str(case["source"]).split("@")[0].removeprefix("testdata/").removesuffix(".json")


def test_hash_known_answers() -> None:
    # The same constants the CT implementations test (transparency-dev/merkle rfc6962 hasher).
    assert leaf_hash(b"L123456").hex() == "395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56"
    assert node_hash(b"N123", b"N456").hex() == (
        "aa217fe888e47007fa15edab33c2b492a722cb106c64667fc2b044444de66bbb"
    )


@pytest.mark.parametrize("n", range(9), ids=[f"n={n}" for n in range(9)])
def test_mth_matches_rfc6962_test_roots(n: int) -> None:
    assert mth(LEAVES[:n]).hex() == ROOTS[n]


@pytest.mark.parametrize("case", _load("inclusion.json"), ids=_id)
def test_inclusion_vectors(case: dict[str, Any]) -> None:
    args = (
        _b64(case["leafHash"]),
        int(case["leafIdx"]),
        int(case["treeSize"]),
        [_b64(p) for p in case["proof"] or []],
        _b64(case["root"]),
    )
    if case["wantErr"]:
        with pytest.raises(ReferenceProofError):
            verify_inclusion(*args)
    else:
        verify_inclusion(*args)
        assert args[0] == leaf_hash(LEAVES[args[1]])  # the vectors' tree is the RFC 6962 test tree


@pytest.mark.parametrize("case", _load("consistency.json"), ids=_id)
def test_consistency_vectors(case: dict[str, Any]) -> None:
    m, n = int(case["size1"]), int(case["size2"])
    args = (m, n, [_b64(p) for p in case["proof"] or []], _b64(case["root1"]), _b64(case["root2"]))
    if case["wantErr"]:
        with pytest.raises(ReferenceProofError):
            verify_consistency(*args)
    else:
        verify_consistency(*args)
        assert (args[3].hex(), args[4].hex()) == (ROOTS[m], ROOTS[n])


def _tree() -> MemoryTree:
    tree = MemoryTree()
    tree.append_entries(LEAVES)
    return tree


def test_every_proof_of_the_test_tree_verifies() -> None:
    """All (index, size) and (m, n) of the 8-leaf tree: our generator, the reference verifier."""
    tree = _tree()
    for n in range(1, 9):
        root = bytes.fromhex(ROOTS[n])
        for i in range(n):
            verify_inclusion(leaf_hash(LEAVES[i]), i, n, inclusion_proof(i, n, tree), root)
        for m in range(1, n + 1):
            verify_consistency(m, n, consistency_proof(m, n, tree), bytes.fromhex(ROOTS[m]), root)


def _flip(h: bytes) -> bytes:
    return bytes([h[0] ^ 0x08]) + h[1:]


JUNK = bytes(32)
GOOD_I = (leaf_hash(LEAVES[5]), 5, 7)  # a non power of two
GOOD_C = (3, 7)


def _incl(**change: Any) -> tuple[bytes, int, int, list[bytes], bytes]:
    leaf, i, n = change.get("leaf", GOOD_I[0]), change.get("i", GOOD_I[1]), change.get("n", GOOD_I[2])
    proof = change.get("proof", inclusion_proof(GOOD_I[1], GOOD_I[2], _tree()))
    return leaf, i, n, proof, change.get("root", bytes.fromhex(ROOTS[GOOD_I[2]]))


def _cons(**change: Any) -> tuple[int, int, list[bytes], bytes, bytes]:
    m, n = change.get("m", GOOD_C[0]), change.get("n", GOOD_C[1])
    proof = change.get("proof", consistency_proof(GOOD_C[0], GOOD_C[1], _tree()))
    r1, r2 = bytes.fromhex(ROOTS[GOOD_C[0]]), bytes.fromhex(ROOTS[GOOD_C[1]])
    return m, n, proof, change.get("r1", r1), change.get("r2", r2)


_PI = inclusion_proof(*GOOD_I[1:], _tree())
_PC = consistency_proof(*GOOD_C, _tree())
REFUSED_INCLUSION = {
    "index-equals-size": _incl(i=7),
    "index-negative": _incl(i=-1),
    "wrong-index": _incl(i=4),
    "wrong-size": _incl(n=6),
    "wrong-leaf": _incl(leaf=leaf_hash(LEAVES[4])),
    "wrong-root": _incl(root=bytes.fromhex(ROOTS[6])),
    "flipped-proof-hash": _incl(proof=[_PI[0], _flip(_PI[1]), *_PI[2:]]),
    "truncated-proof": _incl(proof=_PI[:-1]),
    "extra-hash": _incl(proof=[*_PI, JUNK]),
    "empty-proof": _incl(proof=[]),
}
REFUSED_CONSISTENCY = {
    "first-zero": _cons(m=0),
    "first-above-second": _cons(m=8, n=7),
    "empty-proof": _cons(proof=[]),
    "wrong-first-size": _cons(m=2),
    "wrong-second-size": _cons(n=4),
    "wrong-first-root": _cons(r1=bytes.fromhex(ROOTS[4])),
    "wrong-second-root": _cons(r2=JUNK),
    "flipped-proof-hash": _cons(proof=[_flip(_PC[0]), *_PC[1:]]),
    "truncated-proof": _cons(proof=_PC[:-1]),
    "extra-hash": _cons(proof=[*_PC, JUNK]),
    "equal-sizes-other-root": (5, 5, [], bytes.fromhex(ROOTS[5]), JUNK),
    "equal-sizes-nonempty-proof": (5, 5, [JUNK], bytes.fromhex(ROOTS[5]), bytes.fromhex(ROOTS[5])),
}


def test_good_cases_of_the_refusal_tables_verify() -> None:
    verify_inclusion(*_incl())
    verify_consistency(*_cons())
    # RFC property, not a reference bug: a proof of the same shape also fits a
    # neighbouring size, so the size must come from the signed head.
    verify_inclusion(*_incl(n=8))
    verify_consistency(*_cons(n=8))


@pytest.mark.parametrize("args", REFUSED_INCLUSION.values(), ids=REFUSED_INCLUSION.keys())
def test_reference_refuses_bad_inclusion(args: tuple[bytes, int, int, list[bytes], bytes]) -> None:
    with pytest.raises(ReferenceProofError):
        verify_inclusion(*args)


@pytest.mark.parametrize("args", REFUSED_CONSISTENCY.values(), ids=REFUSED_CONSISTENCY.keys())
def test_reference_refuses_bad_consistency(args: tuple[int, int, list[bytes], bytes, bytes]) -> None:
    with pytest.raises(ReferenceProofError):
        verify_consistency(*args)
