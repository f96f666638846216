"""Generate the golden envelope vectors in ``envelopes.json`` (run: python tests/vectors/gen_vectors.py).

Keys come from fixed seeds, so the directory and key ids are reproducible.
HPKE and the AEAD nonce are randomised, so the envelopes are VERIFY-ONLY
vectors: a checked-in envelope plus the directory and the recipients'
private keys; ``tests/unit/test_vectors.py`` must open them. The Ed25519
known answer (deterministic signatures) pins the signing domain separation.
Regenerating changes the envelopes; do it only on a deliberate format change.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from exchange.core import primitives
from exchange.core.codec.body import encode_body
from exchange.core.codec.envelope import encode_envelope
from exchange.core.model import (
    Alert,
    AlertCategory,
    Algorithm,
    CaseMessage,
    ConsularRequest,
    ConsularRequestType,
    Directory,
    Kind,
    Office,
    Person,
    PolicyRule,
    Priority,
    PublicKey,
    Suite,
)
from exchange.core.seal import HEADER_SIGNING_CONTEXT, seal

NOW_MS = 1_760_000_000_000
OFFICES = ("ru-mvd-dushanbe", "tj-mvd-moscow", "tj-labour-moscow")
SEED_SIZE = {
    Algorithm.ED25519: 32,
    Algorithm.ML_DSA_65: 32,
    Algorithm.X25519: 32,
    Algorithm.ML_KEM_768_X25519: 96,
}
OUT = Path(__file__).with_name("envelopes.json")


def seed(label: str, size: int) -> bytes:
    out = b""
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"liaison-test-vector/{label}/{counter}".encode()).digest()
        counter += 1
    return out[:size]


def office_keys(office_id: str) -> dict[Algorithm, primitives.PrivateKey]:
    return {a: primitives.load_private(a, seed(f"{office_id}/{a.name}", SEED_SIZE[a])) for a in Algorithm}


def directory_from(offices: dict[str, dict[Algorithm, primitives.PrivateKey]]) -> Directory:
    def pub(k: primitives.PrivateKey) -> PublicKey:
        raw = primitives.public_bytes(k)
        return PublicKey(primitives.key_id(k.algorithm, raw), k.algorithm, raw)

    return Directory(
        deployment="vectors",
        version=1,
        issued_ms=NOW_MS,
        offices=tuple(Office(oid, tuple(pub(k) for k in keys.values())) for oid, keys in offices.items()),
        gateways=(),
        authorities=(),
        threshold=1,
        policy=(PolicyRule("*", frozenset(Kind), frozenset({"*"})),),
    )


def main() -> None:
    keys = {oid: office_keys(oid) for oid in OFFICES}
    directory = directory_from(keys)
    sender = OFFICES[0]
    bodies = {
        "alert": Alert(AlertCategory.DRUG_TRAFFICKING, Priority.FLASH, "Vector", "Golden alert body."),
        "case": CaseMessage(case_id="case-vector", text="Golden case message."),
        "consular": ConsularRequest(
            Person("Vector Citizen"), ConsularRequestType.LEGAL_CONSULTATION, "Help."
        ),
    }
    vectors = []
    for suite in Suite:
        for name, body in bodies.items():
            recipients = OFFICES[1:] if name != "case" else OFFICES[1:2]
            env = seal(
                body,
                sender=sender,
                sender_keys=[k for a, k in keys[sender].items() if a.is_signing],
                recipients=recipients,
                directory=directory,
                suite=suite,
                now_ms=NOW_MS,
                ttl_s=86_400,
            )
            vectors.append(
                {
                    "name": f"{suite.label}-{name}-{len(recipients)}-recipients",
                    "suite": suite.label,
                    "sender": sender,
                    "recipients": list(recipients),
                    "message_id": env.header.context.message_id,
                    "body": encode_body(body).hex(),
                    "envelope": encode_envelope(env).hex(),
                }
            )
    kat_key = primitives.load_private(Algorithm.ED25519, seed("ed25519-kat", 32))
    kat_message = b"liaison known-answer message"
    data = {
        "description": "Liaison golden vectors, verify-only (HPKE and nonces are random); see gen_vectors.py",
        "now_ms": NOW_MS,
        "offices": [
            {
                "id": oid,
                "keys": [
                    {
                        "algorithm": a.name,
                        "key_id": primitives.key_id(a, primitives.public_bytes(k)),
                        "public": primitives.public_bytes(k).hex(),
                        "private": primitives.private_bytes(k).hex(),
                    }
                    for a, k in office_keys(oid).items()
                ],
            }
            for oid in OFFICES
        ],
        "vectors": vectors,
        "ed25519_known_answer": {
            "seed": primitives.private_bytes(kat_key).hex(),
            "public": primitives.public_bytes(kat_key).hex(),
            "context": HEADER_SIGNING_CONTEXT,
            "message": kat_message.hex(),
            "signature": primitives.sign(kat_key, kat_message, HEADER_SIGNING_CONTEXT).hex(),
        },
    }
    OUT.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {len(vectors)} vectors to {OUT}")


if __name__ == "__main__":
    main()
