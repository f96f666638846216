"""Golden vectors: checked-in envelopes must still open; the Ed25519 known answer must match."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from exchange.core import primitives
from exchange.core.codec.body import decode_body
from exchange.core.model import Algorithm, Directory, Kind, Office, PolicyRule, PublicKey
from exchange.core.seal import open_envelope, verify_envelope

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "envelopes.json").read_text())
NOW_MS = VECTORS["now_ms"]


def _directory() -> Directory:
    offices = tuple(
        Office(
            o["id"],
            tuple(
                PublicKey(k["key_id"], Algorithm[k["algorithm"]], bytes.fromhex(k["public"]))
                for k in o["keys"]
            ),
        )
        for o in VECTORS["offices"]
    )
    policy = (PolicyRule("*", frozenset(Kind), frozenset({"*"})),)
    return Directory("vectors", 1, NOW_MS, offices, (), (), 1, policy)


def _private_keys(office_id: str) -> dict[str, primitives.PrivateKey]:
    office = next(o for o in VECTORS["offices"] if o["id"] == office_id)
    return {
        k["key_id"]: primitives.load_private(Algorithm[k["algorithm"]], bytes.fromhex(k["private"]))
        for k in office["keys"]
    }


@pytest.mark.parametrize("office", VECTORS["offices"], ids=lambda o: o["id"])
def test_fixed_seeds_give_the_recorded_keys(office):
    for k in office["keys"]:
        key = primitives.load_private(Algorithm[k["algorithm"]], bytes.fromhex(k["private"]))
        assert primitives.public_bytes(key).hex() == k["public"]
        assert primitives.key_id(key.algorithm, primitives.public_bytes(key)) == k["key_id"]


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=lambda v: v["name"])
def test_vector_opens(vector):
    directory = _directory()
    wire = bytes.fromhex(vector["envelope"])
    header = verify_envelope(wire, directory=directory, now_ms=NOW_MS)
    assert header.message_id == vector["message_id"]
    assert header.sender == vector["sender"]
    assert list(header.recipients) == vector["recipients"]
    assert header.context.suite.label == vector["suite"]
    for me in vector["recipients"]:
        opened = open_envelope(wire, me=me, my_keys=_private_keys(me), directory=directory, now_ms=NOW_MS)
        assert opened.body == decode_body(bytes.fromhex(vector["body"]))


def test_ed25519_known_answer():
    kat = VECTORS["ed25519_known_answer"]
    key = primitives.load_private(Algorithm.ED25519, bytes.fromhex(kat["seed"]))
    assert primitives.public_bytes(key).hex() == kat["public"]
    message = bytes.fromhex(kat["message"])
    assert primitives.sign(key, message, kat["context"]).hex() == kat["signature"]
    primitives.verify(
        Algorithm.ED25519,
        bytes.fromhex(kat["public"]),
        bytes.fromhex(kat["signature"]),
        message,
        kat["context"],
    )
