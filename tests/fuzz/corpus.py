"""Valid encodings to mutate: real sealed envelopes, statements, directories, records.

``build_corpus`` makes everything from freshly generated keys (with the
factories of ``tests/unit/conftest.py``), so the seeds carry real signatures
and ciphertexts: a mutation that still verifies is a finding, not noise.
Used by the hypothesis fuzz tests and by the atheris harnesses; it tests
nothing itself.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from exchange.core import model, primitives
from exchange.core.codec.body import encode_body
from exchange.core.codec.envelope import (
    encode_envelope,
    encode_frame,
    encode_signed_statement,
    encode_statement,
)
from exchange.core.directory import SignedDirectory, TrustAnchor, sign_directory
from exchange.core.envelope import Envelope, Receipt, Rejection, Routed, SignedStatement
from exchange.core.seal import seal, sign_statement
from gateway.audit.codec import encode_record, encode_signed_tree_head, encode_tree_head, stats_to_pb
from gateway.audit.query import StatsRow
from gateway.audit.record import AuditRecord, Verdict
from gateway.audit.treehead import SignedTreeHead, TreeHead, sign_cosignature, sign_tree_head
from tests.unit.conftest import GATEWAY_ID, NOW_MS, OfficeKeys, make_directory, make_gateway, make_office

__all__ = ["NOW_MS", "RECIPIENTS", "SENDER", "Corpus", "build_corpus"]

SENDER = "ru-mvd-dushanbe"
RECIPIENTS = ("tj-mvd-moscow", "tj-labour-moscow")
OFFICE_IDS = (SENDER, *RECIPIENTS, "ru-embassy-dushanbe")
AUTHORITY_IDS = ("ru-embassy-dushanbe", "tj-embassy-moscow")


@dataclass(frozen=True)
class Corpus:
    offices: dict[str, OfficeKeys]
    directory: model.Directory  # what envelopes are checked against (classic minimum)
    envelopes: dict[str, Envelope]  # by suite label
    bodies: dict[str, model.Body]  # the plaintext of each envelope, by suite label
    receipt: SignedStatement  # DELIVERED, by RECIPIENTS[0], about envelopes["classic"]
    stamp: SignedStatement  # STAMPED by the gateway
    rejection: SignedStatement  # by the gateway
    trusted: model.Directory  # v1 of the signed directory, with authorities
    anchor: TrustAnchor
    signed_v1: bytes  # verifies against the anchor
    signed_v2: bytes  # verifies against ``trusted`` (and the anchor)
    tree_head: SignedTreeHead
    hints: tuple[str, ...]  # ids worth trying as string values
    seeds: dict[str, list[bytes]]  # by parser name


def _authority(authority_id: str) -> tuple[model.Authority, tuple[primitives.PrivateKey, ...]]:
    keys = (primitives.generate(model.Algorithm.ED25519), primitives.generate(model.Algorithm.ML_DSA_65))
    public = tuple(
        model.PublicKey(
            primitives.key_id(k.algorithm, primitives.public_bytes(k)),
            k.algorithm,
            primitives.public_bytes(k),
        )
        for k in keys
    )
    return model.Authority(authority_id, public, country=authority_id[:2]), keys


def build_corpus() -> Corpus:
    offices = {o: make_office(o) for o in OFFICE_IDS}
    gateway, gateway_keys = make_gateway()
    directory = make_directory(list(offices.values()), gateways=[gateway])
    bodies: dict[str, model.Body] = {
        "classic": model.Alert(
            category=model.AlertCategory(1),
            priority=model.Priority.IMMEDIATE,
            subject="wanted",
            text="details",
            persons=(model.Person("A B", "1990-01-01", "tj", (model.Identifier("passport", "X1", "tj"),)),),
            attachments=(model.Attachment("a.txt", "text/plain", b"hello"),),
        ),
        "hybrid-pq": model.CaseMessage(case_id="case-1", text="follow-up", thread="t1"),
    }
    envelopes = {
        suite.label: seal(
            bodies[suite.label],
            sender=SENDER,
            sender_keys=offices[SENDER].signing,
            recipients=RECIPIENTS,
            directory=directory,
            suite=suite,
            now_ms=NOW_MS,
            ttl_s=600,
        )
        for suite in model.Suite
    }
    classic = envelopes["classic"]
    digest = primitives.sha256(classic.header_bytes)
    message_id = classic.header.context.message_id
    receipt = sign_statement(
        Receipt(
            message_id, model.ReceiptState.DELIVERED, RECIPIENTS[0], NOW_MS + 1, digest, SENDER, RECIPIENTS[0]
        ),
        offices[RECIPIENTS[0]].signing,
    )
    stamp = sign_statement(
        Receipt(message_id, model.ReceiptState.STAMPED, GATEWAY_ID, NOW_MS, digest, SENDER, "", 41),
        gateway_keys,
    )
    rejection = sign_statement(
        Rejection(message_id, model.Reason.POLICY_DENIED, "no", GATEWAY_ID, NOW_MS, digest, SENDER, 42),
        gateway_keys,
    )

    authorities = [_authority(a) for a in AUTHORITY_IDS]
    trusted = dataclasses.replace(
        directory, authorities=tuple(a for a, _ in authorities), threshold=len(authorities)
    )
    v2 = dataclasses.replace(trusted, version=2, issued_ms=NOW_MS)
    signed: list[SignedDirectory] = []
    for version in (trusted, v2):
        target: SignedDirectory | model.Directory = version
        for authority, keys in authorities:
            target = sign_directory(target, authority.id, keys)
        assert isinstance(target, SignedDirectory)
        signed.append(target)
    signed_v1, signed_v2 = (s.to_bytes() for s in signed)

    head = TreeHead(5, primitives.sha256(b"root"), NOW_MS, GATEWAY_ID)
    head_bytes = encode_tree_head(head)
    sth = SignedTreeHead(head, head_bytes, sign_tree_head(head, head_bytes, gateway_keys))
    witness_key = authorities[1][1][0]
    sth = dataclasses.replace(sth, cosignatures=(sign_cosignature(sth, AUTHORITY_IDS[1], witness_key),))

    records = [
        AuditRecord(
            at_ms=NOW_MS,
            verdict=Verdict.ACCEPTED,
            sender=SENDER,
            message_id=message_id,
            recipients=RECIPIENTS,
            kind=model.Kind.ALERT,
            priority=model.Priority.IMMEDIATE,
            case_id="c",
            created_ms=NOW_MS,
            expires_ms=NOW_MS + 600_000,
            envelope_size=1234,
            header_digest=digest,
            ciphertext_digest=classic.header.ciphertext_digest,
            suite=model.Suite.CLASSIC,
        ),
        AuditRecord(
            at_ms=NOW_MS, verdict=Verdict.REJECTED, sender=SENDER, reason=model.Reason.REPLAY, detail="x"
        ),
        AuditRecord(
            at_ms=NOW_MS,
            verdict=Verdict.RECEIPT,
            sender=RECIPIENTS[0],
            message_id=message_id,
            receipt_state=model.ReceiptState.READ,
            receipt_signer=RECIPIENTS[0],
        ),
    ]
    key_ids = tuple(k.key_id for o in offices.values() for k in o.office.keys)
    hints = (*OFFICE_IDS, GATEWAY_ID, *AUTHORITY_IDS, message_id, "test", "*", *key_ids)
    statements = [receipt, stamp, rejection]
    envs = list(envelopes.values())
    seeds = {
        "envelope": [encode_envelope(e) for e in envs],
        "header": [e.header_bytes for e in envs],
        "header_context": [e.header.context_bytes for e in envs],
        "frame": [encode_frame(e) for e in envs]
        + [encode_frame(s) for s in statements]
        + [encode_frame(Routed(classic, stamp))],
        "signed_statement": [encode_signed_statement(s) for s in statements],
        "statement": [encode_statement(s.statement) for s in statements],
        "body": [encode_body(b) for b in bodies.values()]
        + [
            encode_body(
                model.ConsularRequest(
                    citizen=model.Person("C D"),
                    request_type=model.ConsularRequestType(1),
                    text="help",
                )
            )
        ],
        "directory": [s.raw for s in signed],
        "signed_directory": [signed_v1, signed_v2],
        "record": [encode_record(r) for r in records],
        "signed_tree_head": [encode_signed_tree_head(sth)],
        "stats_response": [
            stats_to_pb(
                [
                    StatsRow(SENDER, RECIPIENTS[0], "alert", "accepted", "", 3),
                    StatsRow(SENDER, "", "", "rejected", "replay", 1),
                ]
            ).SerializeToString()
        ],
    }
    return Corpus(
        offices=offices,
        directory=directory,
        envelopes=envelopes,
        bodies=bodies,
        receipt=receipt,
        stamp=stamp,
        rejection=rejection,
        trusted=trusted,
        anchor=TrustAnchor.from_directory(trusted),
        signed_v1=signed_v1,
        signed_v2=signed_v2,
        tree_head=sth,
        hints=hints,
        seeds=seeds,
    )
