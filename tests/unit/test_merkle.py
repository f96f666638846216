"""RFC 9162 Merkle tree: known answers, proof generation against the RFC recursion, verifiers."""

from __future__ import annotations

import base64
import hashlib
import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from exchange.core.errors import LiaisonError
from gateway.audit.errors import (
    AuditError,
    ConsistencyProofError,
    HashLengthError,
    InclusionProofError,
    MissingNodeError,
    TreeSizeError,
)
from gateway.audit.merkle import (
    EMPTY_ROOT,
    leaf_hash,
    node_hash,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)
from gateway.audit.tree import (
    Frontier,
    MemoryTree,
    NodeKey,
    consistency_proof,
    inclusion_proof,
    inclusion_proofs,
    perfect_keys,
    root_at,
)

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "merkle"

# RFC 6962 test leaves and roots (NOTES.md, from the CT implementations' test data).
LEAVES = [
    bytes.fromhex(h)
    for h in [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
]
ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
HASHES = [leaf_hash(e) for e in LEAVES]


def _tree(hashes: Sequence[bytes]) -> MemoryTree:
    tree = MemoryTree()
    tree.append_leaf_hashes(hashes)
    return tree


# --- an independent oracle: RFC 9162 §2.1.3.1 / §2.1.4.1 written as the RFC recursion ---


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_path(m: int, d: Sequence[bytes]) -> list[bytes]:
    if len(d) == 1:
        return []
    k = _k(len(d))
    if m < k:
        return [*ref_path(m, d[:k]), root_from_leaf_hashes(d[k:])]
    return [*ref_path(m - k, d[k:]), root_from_leaf_hashes(d[:k])]


def ref_subproof(m: int, d: Sequence[bytes], b: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if b else [root_from_leaf_hashes(d)]
    k = _k(n)
    if m <= k:
        return [*ref_subproof(m, d[:k], b), root_from_leaf_hashes(d[k:])]
    return [*ref_subproof(m - k, d[k:], False), root_from_leaf_hashes(d[:k])]


# --- known answers ----------------------------------------------------------------------


def test_leaf_and_node_hash_known_answers() -> None:
    assert leaf_hash(b"L123456").hex() == "395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56"
    assert node_hash(b"N123", b"N456").hex() == (
        "aa217fe888e47007fa15edab33c2b492a722cb106c64667fc2b044444de66bbb"
    )


@pytest.mark.parametrize("n", range(9), ids=[f"n={n}" for n in range(9)])
def test_rfc6962_roots(n: int) -> None:
    assert root_from_leaf_hashes(HASHES[:n]).hex() == ROOTS[n]
    tree = _tree(HASHES[:n])
    assert tree.root().hex() == ROOTS[n]
    # Historical roots from the full tree's stored nodes.
    assert root_at(n, _tree(HASHES)).hex() == ROOTS[n]


def test_empty_root_is_hash_of_nothing() -> None:
    assert hashlib.sha256(b"").digest() == EMPTY_ROOT
    assert MemoryTree().root() == EMPTY_ROOT


def test_errors_are_liaison_errors() -> None:
    for cls in (InclusionProofError, ConsistencyProofError, TreeSizeError, HashLengthError, MissingNodeError):
        assert issubclass(cls, AuditError)
        assert issubclass(cls, LiaisonError)


# --- transparency-dev/merkle vectors ---------------------------------------------------


def _b64(s: str) -> bytes:
    return base64.b64decode(s)


def _load(name: str) -> list[dict[str, object]]:
    data: list[dict[str, object]] = json.loads((VECTORS / name).read_text())
    return data


@pytest.mark.parametrize("case", _load("inclusion.json"), ids=lambda c: str(c["source"]).split("@")[0])
def test_inclusion_vectors(case: dict[str, object]) -> None:
    proof = [_b64(p) for p in case["proof"] or []]  # type: ignore[attr-defined]
    args = (_b64(str(case["leafHash"])), int(case["leafIdx"]), int(case["treeSize"]))  # type: ignore[call-overload]
    if case["wantErr"]:
        with pytest.raises(AuditError):
            verify_inclusion(*args, proof, _b64(str(case["root"])))
        return
    verify_inclusion(*args, proof, _b64(str(case["root"])))
    # Our generator emits exactly the reference proof.
    assert inclusion_proof(args[1], args[2], _tree(HASHES[: args[2]])) == proof


@pytest.mark.parametrize("case", _load("consistency.json"), ids=lambda c: str(c["source"]).split("@")[0])
def test_consistency_vectors(case: dict[str, object]) -> None:
    proof = [_b64(p) for p in case["proof"] or []]  # type: ignore[attr-defined]
    m, n = int(case["size1"]), int(case["size2"])  # type: ignore[call-overload]
    roots = (_b64(str(case["root1"])), _b64(str(case["root2"])))
    if case["wantErr"]:
        with pytest.raises(ConsistencyProofError):
            verify_consistency(m, n, proof, *roots)
        return
    verify_consistency(m, n, proof, *roots)
    assert consistency_proof(m, n, _tree(HASHES[:n])) == proof


# --- all pairs up to 8, random larger sizes ---------------------------------------------


def test_all_inclusion_and_consistency_proofs_up_to_8() -> None:
    tree = _tree(HASHES)
    for n in range(1, 9):
        root = bytes.fromhex(ROOTS[n])
        for i in range(n):
            proof = inclusion_proof(i, n, tree)
            assert proof == ref_path(i, HASHES[:n])
            verify_inclusion(HASHES[i], i, n, proof, root)
        for m in range(1, n + 1):
            proof = consistency_proof(m, n, tree)
            assert proof == ref_subproof(m, HASHES[:n], True)
            verify_consistency(m, n, proof, bytes.fromhex(ROOTS[m]), root)


def test_random_larger_trees() -> None:
    rng = random.Random(6962)
    hashes = [leaf_hash(rng.randbytes(rng.randrange(0, 40))) for _ in range(1100)]
    tree = _tree(hashes)
    roots: dict[int, bytes] = {}
    for _ in range(60):
        n = rng.randrange(1, len(hashes) + 1)
        m = rng.randrange(1, n + 1)
        i = rng.randrange(n)
        for size in (m, n):
            roots.setdefault(size, root_from_leaf_hashes(hashes[:size]))
            assert root_at(size, tree) == roots[size]
        proof = inclusion_proof(i, n, tree)
        assert proof == ref_path(i, hashes[:n])
        verify_inclusion(hashes[i], i, n, proof, roots[n])
        cproof = consistency_proof(m, n, tree)
        assert cproof == ref_subproof(m, hashes[:n], True)
        verify_consistency(m, n, cproof, roots[m], roots[n])


def test_frontier_append_in_batches_matches_rfc_root() -> None:
    rng = random.Random(9162)
    hashes = [leaf_hash(i.to_bytes(4, "big")) for i in range(300)]
    frontier = Frontier.empty()
    nodes: dict[NodeKey, bytes] = {}
    done = 0
    while done < len(hashes):
        step = rng.randrange(1, 40)
        frontier, created = frontier.append(hashes[done : done + step])
        nodes.update(created)
        done = min(done + step, len(hashes))
        assert frontier.size == done
        assert frontier.root() == root_from_leaf_hashes(hashes[:done])
        assert set(perfect_keys(done)) <= nodes.keys()
    # Every stored node is the MTH of the leaves it covers.
    for (level, index), h in nodes.items():
        assert h == root_from_leaf_hashes(hashes[index << level : (index + 1) << level])
    assert len(nodes) == 2 * 300 - bin(300).count("1")


def test_frontier_reload_from_reader() -> None:
    tree = _tree(HASHES[:7])
    frontier = Frontier.load(7, tree)
    assert frontier.root().hex() == ROOTS[7]
    grown, _ = frontier.append([HASHES[7]])
    assert grown.root().hex() == ROOTS[8]


def test_proof_costs_one_batched_read_of_log_n_nodes() -> None:
    class Counting(MemoryTree):
        calls: list[int]

        def get_nodes(self, keys: list[NodeKey]) -> dict[NodeKey, bytes]:
            self.calls.append(len(keys))
            return super().get_nodes(keys)

    tree = Counting()
    tree.calls = []
    tree.append_leaf_hashes(leaf_hash(i.to_bytes(4, "big")) for i in range(5000))
    inclusion_proof(1234, 4999, tree)
    consistency_proof(1717, 4999, tree)
    root_at(3333, tree)
    assert len(tree.calls) == 3
    assert max(tree.calls) <= 2 * 13


def test_missing_node_is_reported() -> None:
    with pytest.raises(MissingNodeError):
        inclusion_proof(0, 4, MemoryTree())
    with pytest.raises(MissingNodeError):
        Frontier.load(3, MemoryTree())


@pytest.mark.parametrize(
    ("call", "exc"),
    [
        (lambda t: inclusion_proof(8, 8, t), TreeSizeError),
        (lambda t: inclusion_proof(-1, 8, t), TreeSizeError),
        (lambda t: inclusion_proof(0, 0, t), TreeSizeError),
        (lambda t: consistency_proof(0, 8, t), TreeSizeError),
        (lambda t: consistency_proof(5, 4, t), TreeSizeError),
        (lambda t: root_at(-1, t), TreeSizeError),
        (lambda t: root_at(2**63, t), TreeSizeError),
    ],
    ids=["index=size", "index<0", "size=0", "m=0", "m>n", "root-negative", "root-too-big"],
)
def test_generation_refuses_bad_sizes(call: Callable[[MemoryTree], object], exc: type[Exception]) -> None:
    with pytest.raises(exc):
        call(_tree(HASHES))


def test_frontier_refuses_wrong_length_leaf_hash() -> None:
    with pytest.raises(HashLengthError):
        Frontier.empty().append([b"short"])


# --- negative tables for the verifiers ----------------------------------------------------


def _flip(b: bytes, bit: int = 3) -> bytes:
    return bytes([b[0] ^ (1 << bit)]) + b[1:]


@dataclass(frozen=True)
class Incl:
    leaf: bytes
    index: int
    size: int
    proof: tuple[bytes, ...]
    root: bytes

    def verify(self) -> None:
        verify_inclusion(self.leaf, self.index, self.size, list(self.proof), self.root)


def _incl(index: int, size: int) -> Incl:
    proof = tuple(inclusion_proof(index, size, _tree(HASHES)))
    return Incl(HASHES[index], index, size, proof, bytes.fromhex(ROOTS[size]))


GOOD_INCL = _incl(5, 8)
GOOD_INCL_ODD = _incl(6, 7)
JUNK = hashlib.sha256(b"junk").digest()

INCLUSION_NEGATIVE = [
    ("wrong-index", replace(GOOD_INCL, index=4), InclusionProofError),
    ("wrong-index-odd", replace(GOOD_INCL_ODD, index=5), InclusionProofError),
    ("index-equals-size", replace(GOOD_INCL, index=8), TreeSizeError),
    ("index-negative", replace(GOOD_INCL, index=-1), TreeSizeError),
    ("size-zero", replace(GOOD_INCL, index=0, size=0), TreeSizeError),
    ("size-too-big", replace(GOOD_INCL, size=2**63), TreeSizeError),
    ("wrong-size-smaller", replace(GOOD_INCL, size=6), InclusionProofError),
    ("wrong-size-larger", replace(GOOD_INCL, size=16), InclusionProofError),
    ("wrong-size-odd", replace(GOOD_INCL_ODD, size=8), InclusionProofError),
    ("truncated-proof", replace(GOOD_INCL, proof=GOOD_INCL.proof[:-1]), InclusionProofError),
    ("empty-proof", replace(GOOD_INCL, proof=()), InclusionProofError),
    ("extra-element", replace(GOOD_INCL, proof=(*GOOD_INCL.proof, JUNK)), InclusionProofError),
    ("preceding-element", replace(GOOD_INCL, proof=(JUNK, *GOOD_INCL.proof)), InclusionProofError),
    (
        "flipped-bit-proof",
        replace(GOOD_INCL, proof=(GOOD_INCL.proof[0], _flip(GOOD_INCL.proof[1]), GOOD_INCL.proof[2])),
        InclusionProofError,
    ),
    ("flipped-bit-leaf", replace(GOOD_INCL, leaf=_flip(GOOD_INCL.leaf, 0)), InclusionProofError),
    ("wrong-root", replace(GOOD_INCL, root=bytes.fromhex(ROOTS[7])), InclusionProofError),
    ("entry-not-leaf-hash", replace(GOOD_INCL, leaf=hashlib.sha256(LEAVES[5]).digest()), InclusionProofError),
    ("short-root", replace(GOOD_INCL, root=GOOD_INCL.root[:31]), HashLengthError),
    ("short-leaf", replace(GOOD_INCL, leaf=b"WrongLeaf"), HashLengthError),
    (
        "short-proof-hash",
        replace(GOOD_INCL, proof=(GOOD_INCL.proof[0][:16], *GOOD_INCL.proof[1:])),
        HashLengthError,
    ),
    ("proof-over-limit", replace(GOOD_INCL, proof=(JUNK,) * 65), HashLengthError),
]


def test_good_inclusion_cases_verify() -> None:
    GOOD_INCL.verify()
    GOOD_INCL_ODD.verify()


@pytest.mark.parametrize(
    ("case", "exc"), [(c, e) for _, c, e in INCLUSION_NEGATIVE], ids=[i for i, _, _ in INCLUSION_NEGATIVE]
)
def test_inclusion_negative(case: Incl, exc: type[Exception]) -> None:
    with pytest.raises(exc):
        case.verify()


@dataclass(frozen=True)
class Cons:
    m: int
    n: int
    proof: tuple[bytes, ...]
    root1: bytes
    root2: bytes

    def verify(self) -> None:
        verify_consistency(self.m, self.n, list(self.proof), self.root1, self.root2)


def _cons(m: int, n: int) -> Cons:
    proof = tuple(consistency_proof(m, n, _tree(HASHES)))
    return Cons(m, n, proof, bytes.fromhex(ROOTS[m]), bytes.fromhex(ROOTS[n]))


GOOD_CONS = _cons(3, 7)
GOOD_CONS_POW2 = _cons(4, 8)

CONSISTENCY_NEGATIVE = [
    ("m-greater-than-n", replace(GOOD_CONS, m=8), TreeSizeError),
    ("m-zero", replace(GOOD_CONS, m=0, root1=EMPTY_ROOT), TreeSizeError),
    ("m-zero-empty-proof", replace(GOOD_CONS, m=0, proof=(), root1=EMPTY_ROOT), TreeSizeError),
    ("n-too-big", replace(GOOD_CONS, n=2**63), TreeSizeError),
    (
        "swapped-sizes",
        replace(GOOD_CONS, m=7, n=3, root1=GOOD_CONS.root2, root2=GOOD_CONS.root1),
        TreeSizeError,
    ),
    ("empty-proof", replace(GOOD_CONS, proof=()), ConsistencyProofError),
    ("wrong-m", replace(GOOD_CONS, m=2), ConsistencyProofError),
    ("wrong-n-smaller", replace(GOOD_CONS, n=4), ConsistencyProofError),
    ("wrong-n-larger", replace(GOOD_CONS, n=9), ConsistencyProofError),
    ("wrong-m-pow2", replace(GOOD_CONS_POW2, m=2, root1=bytes.fromhex(ROOTS[2])), ConsistencyProofError),
    ("truncated-proof", replace(GOOD_CONS, proof=GOOD_CONS.proof[:-1]), ConsistencyProofError),
    ("extra-element", replace(GOOD_CONS, proof=(*GOOD_CONS.proof, JUNK)), ConsistencyProofError),
    (
        "extra-element-pow2",
        replace(GOOD_CONS_POW2, proof=(*GOOD_CONS_POW2.proof, JUNK)),
        ConsistencyProofError,
    ),
    (
        "flipped-bit-first",
        replace(GOOD_CONS, proof=(_flip(GOOD_CONS.proof[0]), *GOOD_CONS.proof[1:])),
        ConsistencyProofError,
    ),
    (
        "flipped-bit-last",
        replace(GOOD_CONS, proof=(*GOOD_CONS.proof[:-1], _flip(GOOD_CONS.proof[-1]))),
        ConsistencyProofError,
    ),
    ("wrong-root1", replace(GOOD_CONS, root1=bytes.fromhex(ROOTS[4])), ConsistencyProofError),
    ("wrong-root2", replace(GOOD_CONS, root2=bytes.fromhex(ROOTS[8])), ConsistencyProofError),
    ("wrong-root1-pow2", replace(GOOD_CONS_POW2, root1=JUNK), ConsistencyProofError),
    (
        "swapped-roots",
        replace(GOOD_CONS, root1=GOOD_CONS.root2, root2=GOOD_CONS.root1),
        ConsistencyProofError,
    ),
    (
        "equal-sizes-nonempty-proof",
        Cons(5, 5, (JUNK,), bytes.fromhex(ROOTS[5]), bytes.fromhex(ROOTS[5])),
        ConsistencyProofError,
    ),
    ("equal-sizes-different-roots", Cons(5, 5, (), bytes.fromhex(ROOTS[5]), JUNK), ConsistencyProofError),
    ("short-root1", replace(GOOD_CONS, root1=GOOD_CONS.root1[:31]), HashLengthError),
    ("proof-over-limit", replace(GOOD_CONS, proof=(JUNK,) * 65), HashLengthError),
]


def test_good_consistency_cases_verify() -> None:
    GOOD_CONS.verify()
    GOOD_CONS_POW2.verify()
    Cons(5, 5, (), bytes.fromhex(ROOTS[5]), bytes.fromhex(ROOTS[5])).verify()


@pytest.mark.parametrize(
    ("case", "exc"), [(c, e) for _, c, e in CONSISTENCY_NEGATIVE], ids=[i for i, _, _ in CONSISTENCY_NEGATIVE]
)
def test_consistency_negative(case: Cons, exc: type[Exception]) -> None:
    with pytest.raises(exc):
        case.verify()


def test_size_is_bound_only_by_the_signed_tree_head() -> None:
    """RFC 9162 proofs of equal shape verify for neighbouring sizes (5 in 7 vs 8).

    Not a bug of the verifier: the size a client checks against must come from
    the signed tree head, never from the party that sent the proof.
    """
    replace(GOOD_INCL, size=7).verify()
    replace(GOOD_CONS, n=8).verify()


def test_every_single_bit_flip_is_caught() -> None:
    """Flip each bit of each proof hash of a few cases: never accepted."""
    for good in (GOOD_INCL, GOOD_INCL_ODD):
        for j, h in enumerate(good.proof):
            for bit in range(0, 256, 37):
                bad = bytearray(h)
                bad[bit // 8] ^= 1 << (bit % 8)
                proof = (*good.proof[:j], bytes(bad), *good.proof[j + 1 :])
                with pytest.raises(InclusionProofError):
                    replace(good, proof=proof).verify()
    for goodc in (GOOD_CONS, GOOD_CONS_POW2):
        for j, h in enumerate(goodc.proof):
            for bit in range(0, 256, 37):
                bad = bytearray(h)
                bad[bit // 8] ^= 1 << (bit % 8)
                proof = (*goodc.proof[:j], bytes(bad), *goodc.proof[j + 1 :])
                with pytest.raises(ConsistencyProofError):
                    replace(goodc, proof=proof).verify()


class _CountingReader:
    def __init__(self, tree: MemoryTree) -> None:
        self.tree, self.reads = tree, 0

    def get_nodes(self, keys: list[NodeKey]) -> dict[NodeKey, bytes]:
        self.reads += 1
        return self.tree.get_nodes(keys)


@pytest.mark.parametrize("size", [1, 2, 7, 16, 33, 100])
def test_inclusion_proofs_of_a_commit_in_one_read_equal_the_single_proofs(size: int) -> None:
    tree = MemoryTree()
    tree.append_entries(f"e{i}".encode() for i in range(size))
    indices = list(range(max(0, size - 16), size))  # the records of the last commit
    reader = _CountingReader(tree)
    assert inclusion_proofs(indices, size, reader) == [inclusion_proof(i, size, tree) for i in indices]
    assert reader.reads == (1 if size > 1 else 0)  # one batched read (none for a one-leaf tree)
    with pytest.raises(TreeSizeError):
        inclusion_proofs([size], size, tree)
