"""Audit bundles, offline: build one from an in-memory log, verify it, and refuse tampered copies.

Pure: keys are generated here, heads signed with ``sign_tree_head``, nothing
touches the network.
"""

from __future__ import annotations

import base64
import dataclasses
import itertools
import json
from collections.abc import Callable
from typing import Any

import pytest

from exchange.core import primitives
from exchange.core.directory import SignedDirectory, sign_directory
from exchange.core.errors import LiaisonError
from exchange.core.model import Algorithm, Authority, Directory, Kind, Priority, Reason
from gateway.audit.bundle import BUNDLE_FORMAT, build_bundle, head_from_json, head_to_json, verify_bundle_data
from gateway.audit.codec import encode_record, encode_tree_head
from gateway.audit.merkle import leaf_hash, root_from_leaf_hashes
from gateway.audit.record import AuditRecord, Verdict
from gateway.audit.tree import MemoryTree, consistency_proof
from gateway.audit.treehead import SignedTreeHead, TreeHead, sign_cosignature, sign_tree_head
from tests.unit.conftest import GATEWAY_ID, Kit

SIGNING = (Algorithm.ED25519, Algorithm.ML_DSA_65)


@dataclasses.dataclass(frozen=True)
class World:
    directory: Directory
    signed_directory: bytes
    gateway_keys: tuple[primitives.PrivateKey, ...]
    witness_key: primitives.PrivateKey
    entries: list[bytes]


def _authority(name: str) -> tuple[Authority, tuple[primitives.PrivateKey, ...]]:
    keys = tuple(primitives.generate(a) for a in SIGNING)
    return Authority(id=name, keys=tuple(Kit.public_key(k) for k in keys)), keys


def make_world() -> World:
    """Two authorities (threshold 2), one gateway, 11 encoded records."""
    ru, ru_keys = _authority("ru-embassy")
    tj, tj_keys = _authority("tj-embassy")
    gw, gw_keys = Kit.make_gateway()
    office = Kit.make_office("ru-mvd-dushanbe")
    d = dataclasses.replace(Kit.make_directory([office], gateways=[gw]), authorities=(ru, tj), threshold=2)
    signed = sign_directory(sign_directory(d, "ru-embassy", ru_keys), "tj-embassy", tj_keys)
    entries = [
        encode_record(
            AuditRecord(
                at_ms=Kit.now_ms + i,
                verdict=Verdict.REJECTED if i == 3 else Verdict.ACCEPTED,
                reason=Reason.POLICY_DENIED if i == 3 else None,
                sender="ru-mvd-dushanbe",
                message_id=f"m-{i}",
                recipients=("tj-mvd-moscow",),
                kind=Kind.ALERT,
                priority=Priority.ROUTINE,
            )
        )
        for i in range(11)
    ]
    return World(signed.directory, signed.to_bytes(), gw_keys, tj_keys[0], entries)


@pytest.fixture(scope="module")
def world() -> World:
    return make_world()


def _head(world: World, size: int) -> SignedTreeHead:
    root = root_from_leaf_hashes([leaf_hash(e) for e in world.entries[:size]])
    head = TreeHead(size, root, Kit.now_ms + size, GATEWAY_ID)
    head_bytes = encode_tree_head(head)
    return SignedTreeHead(head, head_bytes, sign_tree_head(head, head_bytes, world.gateway_keys))


def _bundle(world: World, sizes: tuple[int, ...] = (3, 7, 11), cosign: bool = True) -> dict[str, Any]:
    tree = MemoryTree()
    tree.append_entries(world.entries)
    heads = [_head(world, s) for s in sizes]
    if cosign:
        heads[-1] = dataclasses.replace(
            heads[-1], cosignatures=(sign_cosignature(heads[-1], "tj-embassy", world.witness_key),)
        )
    proofs = {(a, b): consistency_proof(a, b, tree) for a, b in itertools.pairwise(sizes)}
    entries = list(enumerate(world.entries))
    return build_bundle(entries, heads, proofs, world.signed_directory, Kit.now_ms)


def _data(bundle: dict[str, Any]) -> bytes:
    return json.dumps(bundle).encode()


def test_bundle_round_trip_verifies(world: World) -> None:
    bundle = _bundle(world)
    assert bundle["format"] == BUNDLE_FORMAT
    report = verify_bundle_data(_data(bundle))
    assert report.size == 11
    assert report.head_sizes == (3, 7, 11)
    assert report.cosigned == ((11, ("tj-embassy",)),)
    assert report.directory_signed_by == ("ru-embassy", "tj-embassy")
    assert report.directory_digest in report.summary()


def test_pinned_directory_must_match_the_deployment(world: World, kit: type[Kit]) -> None:
    other, keys = _authority("un-embassy")
    d = dataclasses.replace(kit.make_directory([]), deployment="other", authorities=(other,), threshold=1)
    pinned = sign_directory(d, "un-embassy", keys).to_bytes()
    with pytest.raises(LiaisonError, match="deployment 'test'"):
        verify_bundle_data(_data(_bundle(world)), pinned=pinned)
    assert verify_bundle_data(_data(_bundle(world)), pinned=world.signed_directory).size == 11


def test_head_json_round_trip(world: World) -> None:
    head = _head(world, 5)
    assert head_from_json(head_to_json(head)) == head


def _foreign_cosignature(b: dict[str, Any]) -> None:
    stranger = primitives.generate(Algorithm.ED25519)
    head = head_from_json(b["tree_heads"][-1])
    forged = dataclasses.replace(head, cosignatures=(sign_cosignature(head, "tj-embassy", stranger),))
    b["tree_heads"][-1] = head_to_json(forged)


def _flip_cosignature(b: dict[str, Any]) -> None:
    head = head_from_json(b["tree_heads"][-1])
    c = head.cosignatures[0]
    bad = dataclasses.replace(c.signature, value=bytes([c.signature.value[0] ^ 1]) + c.signature.value[1:])
    b["tree_heads"][-1] = head_to_json(
        dataclasses.replace(head, cosignatures=(dataclasses.replace(c, signature=bad),))
    )


def _drop_authority_signature(b: dict[str, Any]) -> None:
    signed = SignedDirectory.from_bytes(base64.b64decode(b["directory"]))
    only_ru = dataclasses.replace(signed, signatures=signed.signatures[:1])
    b["directory"] = base64.b64encode(only_ru.to_bytes()).decode()


def _extra_record(b: dict[str, Any]) -> None:
    b["records"].append({"index": len(b["records"]), "entry": b["records"][0]["entry"]})


TAMPERS: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("not-a-bundle", lambda b: b.update(format="zip"), "not a liaison-audit-bundle/1 bundle"),
    ("bad-base64", lambda b: b["records"][0].update(entry="***"), "record 0 entry is not valid base64"),
    ("garbled-record", lambda b: b["records"][4].update(entry="AAAA"), "record 4 does not decode"),
    ("records-swapped", lambda b: b["records"].reverse(), "not contiguous: expected index 0, found 10"),
    ("extra-record", _extra_record, "bundle holds 12 records, its newest head covers 11"),
    ("size-lies", lambda b: b.update(size=7), "bundle size 7 is not the newest head's size 11"),
    ("head-dropped", lambda b: b["tree_heads"].pop(1), "no consistency proof between sizes 3 and 11"),
    ("cosignature-by-stranger", _foreign_cosignature, "witness tj-embassy has no key"),
    ("cosignature-value-flipped", _flip_cosignature, "signature"),
    ("one-authority-short", _drop_authority_signature, "valid signatures from 1 of the 2"),
    ("timestamp-edited", lambda b: b["tree_heads"][0].update(timestamp=0), "field timestamp does not match"),
    ("cosignature-list-edited", lambda b: b["tree_heads"][-1]["cosignatures"].clear(), "cosignatures do not"),
]


@pytest.mark.parametrize(("tamper", "reason"), [t[1:] for t in TAMPERS], ids=[t[0] for t in TAMPERS])
def test_tampered_bundle_refused(world: World, tamper: Callable[[dict[str, Any]], None], reason: str) -> None:
    bundle = _bundle(world)
    tamper(bundle)
    with pytest.raises(LiaisonError, match=reason):
        verify_bundle_data(_data(bundle))


def test_not_json_refused() -> None:
    with pytest.raises(LiaisonError, match="not JSON"):
        verify_bundle_data(b"\xff{")
