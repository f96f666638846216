"""Signed directory: m-of-n authorities, rollback, key validity and policy tables."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from exchange.core import model, primitives
from exchange.core.codec.directory import (
    MAX_SIGNED_DIRECTORY_BYTES,
    AuthoritySignature,
    decode_directory,
    decode_signed_directory,
    encode_directory,
    encode_signed_directory,
)
from exchange.core.directory import (
    DirectoryState,
    SignedDirectory,
    TrustAnchor,
    counting_authorities,
    directory_digest,
    sign_directory,
    verify_directory,
)
from exchange.core.errors import (
    CodecError,
    DirectoryError,
    DirectoryInvalidError,
    DirectoryRollbackError,
    DirectorySignatureError,
    OversizeError,
)

NOW = 1_750_000_000_000
SIGNING = (model.Algorithm.ED25519, model.Algorithm.ML_DSA_65)


@dataclasses.dataclass(frozen=True)
class Auth:
    id: str
    keys: tuple[primitives.PrivateKey, ...]

    @property
    def authority(self) -> model.Authority:
        return model.Authority(
            id=self.id,
            keys=tuple(
                model.PublicKey(
                    key_id=primitives.key_id(k.algorithm, primitives.public_bytes(k)),
                    algorithm=k.algorithm,
                    public=primitives.public_bytes(k),
                )
                for k in self.keys
            ),
        )


@pytest.fixture(scope="module")
def auths() -> dict[str, Auth]:
    return {name: Auth(name, tuple(primitives.generate(a) for a in SIGNING)) for name in ("ru", "tj", "un")}


def make(auths: dict[str, Auth], version: int = 1, names: tuple[str, ...] = ("ru", "tj", "un"), m: int = 2):
    office = model.Office(
        id="office-a",
        keys=(model.PublicKey("k1", model.Algorithm.ED25519, b"\x01" * 32),),
        country="TJ",
    )
    return model.Directory(
        deployment="lab",
        version=version,
        issued_ms=NOW,
        offices=(office, dataclasses.replace(office, id="office-b")),
        gateways=(),
        authorities=tuple(auths[n].authority for n in names),
        threshold=m,
        policy=(model.PolicyRule("office-a", frozenset({model.Kind.ALERT}), frozenset({"office-b"})),),
    )


def signed_by(d: model.Directory | SignedDirectory, auths: dict[str, Auth], *names: str) -> SignedDirectory:
    out = d if isinstance(d, SignedDirectory) else SignedDirectory(encode_directory(d), d)
    for n in names:
        out = sign_directory(out, n, auths[n].keys)
    return out


def anchor_of(d: model.Directory) -> TrustAnchor:
    return TrustAnchor.from_directory(d)


# --- codec ------------------------------------------------------------------------


def test_codec_round_trip_keeps_exact_bytes(auths: dict[str, Auth]) -> None:
    d = make(auths)
    signed = signed_by(d, auths, "ru", "tj")
    raw, parsed, sigs = decode_signed_directory(signed.to_bytes())
    assert raw == signed.raw
    assert parsed == d
    assert [s.authority for s in sigs] == ["ru", "tj"]
    assert decode_directory(encode_directory(d)) == d


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"\xff\xff\xff", CodecError),
        (b"\x00" * (MAX_SIGNED_DIRECTORY_BYTES + 1), OversizeError),
    ],
    ids=["garbage", "oversize"],
)
def test_codec_rejects_bad_bytes(data: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        decode_signed_directory(data)


def test_codec_invalid_model_is_directory_invalid(auths: dict[str, Auth]) -> None:
    d = make(auths)
    # threshold 5 of 3 cannot be built as a model, so append the field again:
    # when a scalar field occurs twice, the parser keeps the last value.
    raw = encode_directory(d) + bytes([0x38, 5])  # field 7 (threshold), varint 5
    with pytest.raises(DirectoryInvalidError):
        decode_directory(raw)


# --- m of n -----------------------------------------------------------------------


def test_two_of_three_accepts(auths: dict[str, Auth]) -> None:
    d = make(auths)
    signed = signed_by(d, auths, "ru", "un")
    out = verify_directory(signed.to_bytes(), trusted=None, anchor=anchor_of(d))
    assert out.directory == d
    assert counting_authorities(out, d.authorities) == ("ru", "un")


def _strip_key(signed: SignedDirectory, authority: str, algorithm: model.Algorithm) -> SignedDirectory:
    entries = tuple(
        AuthoritySignature(e.authority, tuple(s for s in e.signatures if s.algorithm is not algorithm))
        if e.authority == authority
        else e
        for e in signed.signatures
    )
    return dataclasses.replace(signed, signatures=entries)


def _tamper(signed: SignedDirectory, authority: str) -> SignedDirectory:
    entries = tuple(
        AuthoritySignature(
            e.authority,
            tuple(dataclasses.replace(s, value=bytes([s.value[0] ^ 1]) + s.value[1:]) for s in e.signatures),
        )
        if e.authority == authority
        else e
        for e in signed.signatures
    )
    return dataclasses.replace(signed, signatures=entries)


def _duplicate(signed: SignedDirectory, authority: str) -> SignedDirectory:
    entry = next(e for e in signed.signatures if e.authority == authority)
    return dataclasses.replace(signed, signatures=(*signed.signatures, entry))


def _as(signed: SignedDirectory, real: str, claimed: str) -> SignedDirectory:
    entries = tuple(
        AuthoritySignature(claimed, e.signatures) if e.authority == real else e for e in signed.signatures
    )
    return dataclasses.replace(signed, signatures=entries)


Case = Callable[[model.Directory, dict[str, Auth]], SignedDirectory]

TOO_FEW: list[tuple[str, Case]] = [
    ("unsigned", signed_by),
    ("one-of-three", lambda d, a: signed_by(d, a, "ru")),
    ("one-authority-twice", lambda d, a: _duplicate(signed_by(d, a, "ru"), "ru")),
    (
        "second-missing-ml-dsa",
        lambda d, a: _strip_key(signed_by(d, a, "ru", "tj"), "tj", model.Algorithm.ML_DSA_65),
    ),
    (
        "second-missing-ed25519",
        lambda d, a: _strip_key(signed_by(d, a, "ru", "tj"), "tj", model.Algorithm.ED25519),
    ),
    ("second-tampered", lambda d, a: _tamper(signed_by(d, a, "ru", "tj"), "tj")),
    ("second-claims-other-name", lambda d, a: _as(signed_by(d, a, "ru", "tj"), "tj", "un")),
    ("outsider-signs", lambda d, a: sign_directory(signed_by(d, a, "ru"), "zz", a["tj"].keys)),
]


@pytest.mark.parametrize("case", [c for _, c in TOO_FEW], ids=[n for n, _ in TOO_FEW])
def test_too_few_authorities_refused(auths: dict[str, Auth], case: Case) -> None:
    d = make(auths)
    with pytest.raises(DirectorySignatureError, match=r"of the 2 required"):
        verify_directory(case(d, auths).to_bytes(), trusted=None, anchor=anchor_of(d))


def test_resigning_replaces_entry(auths: dict[str, Auth]) -> None:
    signed = signed_by(make(auths), auths, "ru", "ru", "tj")
    assert signed.signed_by() == ("ru", "tj")
    assert len(signed.signatures) == 2


def test_sign_refuses_kem_key(auths: dict[str, Auth]) -> None:
    with pytest.raises(DirectoryError, match="cannot sign"):
        sign_directory(make(auths), "ru", [primitives.generate(model.Algorithm.X25519)])


def test_other_deployment_refused(auths: dict[str, Auth]) -> None:
    d = make(auths)
    other = dataclasses.replace(d, deployment="other")
    with pytest.raises(DirectoryInvalidError, match="deployment"):
        verify_directory(signed_by(other, auths, "ru", "tj").to_bytes(), trusted=None, anchor=anchor_of(d))


def test_no_trust_root_refused(auths: dict[str, Auth]) -> None:
    with pytest.raises(DirectoryError):
        verify_directory(signed_by(make(auths), auths, "ru", "tj").to_bytes(), trusted=None, anchor=None)


def test_oversize_refused_before_parse() -> None:
    with pytest.raises(OversizeError):
        verify_directory(b"\x00" * (MAX_SIGNED_DIRECTORY_BYTES + 1), trusted=None, anchor=None)


# --- updates, rotation, rollback --------------------------------------------------


@pytest.mark.parametrize("version", [1, 0], ids=["equal-version", "older-version"])
def test_rollback_refused(auths: dict[str, Auth], version: int) -> None:
    trusted = make(auths, version=1 if version == 1 else 2)
    candidate = make(auths, version=1)
    with pytest.raises(DirectoryRollbackError):
        verify_directory(signed_by(candidate, auths, "ru", "tj").to_bytes(), trusted=trusted, anchor=None)


def test_rotation_needs_old_and_new_thresholds(auths: dict[str, Auth]) -> None:
    v1 = make(auths, names=("ru", "tj"), m=2)
    new_auth = Auth("kz", tuple(primitives.generate(a) for a in SIGNING))
    everyone = {**auths, "kz": new_auth}
    v2 = make(everyone, version=2, names=("ru", "kz"), m=2)
    # Old set only: the new authority never agreed.
    with pytest.raises(DirectorySignatureError, match="new"):
        verify_directory(signed_by(v2, everyone, "ru", "tj").to_bytes(), trusted=v1, anchor=None)
    # New set only: the old set never agreed.
    with pytest.raises(DirectorySignatureError, match="trusted"):
        verify_directory(signed_by(v2, everyone, "ru", "kz").to_bytes(), trusted=v1, anchor=None)
    out = verify_directory(signed_by(v2, everyone, "ru", "tj", "kz").to_bytes(), trusted=v1, anchor=None)
    assert out.version == 2


def test_state_applies_updates_and_refuses_rollback(auths: dict[str, Auth]) -> None:
    v1, v2 = make(auths), make(auths, version=2)
    state = DirectoryState(anchor_of(v1))
    with pytest.raises(DirectoryError):
        _ = state.directory
    b1 = signed_by(v1, auths, "ru", "tj").to_bytes()
    b2 = signed_by(v2, auths, "tj", "un").to_bytes()
    assert state.apply(b1).version == 1
    assert state.apply(b2).version == 2
    with pytest.raises(DirectoryRollbackError):
        state.apply(b1)
    assert state.directory.version == 2
    assert state.current is not None
    assert len(directory_digest(state.current)) == 64


# --- key validity at T ------------------------------------------------------------

KEY_TABLE = [
    ("before-window", {"not_before_ms": NOW + 1}, NOW, False),
    ("at-start", {"not_before_ms": NOW}, NOW, True),
    ("inside", {"not_before_ms": NOW - 10, "not_after_ms": NOW + 10}, NOW, True),
    ("at-end-exclusive", {"not_after_ms": NOW}, NOW, False),
    ("no-end", {"not_after_ms": 0}, NOW + 10**12, True),
    ("revoked-later", {"status": model.KeyStatus.REVOKED, "revoked_at_ms": NOW + 1}, NOW, True),
    ("revoked-at-t", {"status": model.KeyStatus.REVOKED, "revoked_at_ms": NOW}, NOW, False),
    ("revoked-before", {"status": model.KeyStatus.REVOKED, "revoked_at_ms": NOW - 1}, NOW, False),
    ("retiring-still-valid", {"status": model.KeyStatus.RETIRING}, NOW, True),
]


@pytest.mark.parametrize(
    ("fields", "at", "valid"), [(f, t, v) for _, f, t, v in KEY_TABLE], ids=[n for n, *_ in KEY_TABLE]
)
def test_key_valid_at(fields: dict[str, int], at: int, valid: bool) -> None:
    key = model.PublicKey("k", model.Algorithm.ED25519, b"\x00" * 32, **fields)  # type: ignore[arg-type]
    assert key.valid_at(at) is valid
    # survives the codec unchanged
    d = model.Directory("lab", 1, NOW, (model.Office("o", (key,)),), (), (), 1)
    assert decode_directory(encode_directory(d)).offices[0].keys[0].valid_at(at) is valid


def test_revoked_authority_key_is_not_required(auths: dict[str, Auth]) -> None:
    ru = auths["ru"].authority
    revoked = dataclasses.replace(
        ru,
        keys=(ru.keys[0], dataclasses.replace(ru.keys[1], status=model.KeyStatus.REVOKED, revoked_at_ms=1)),
    )
    d = dataclasses.replace(make(auths), authorities=(revoked, auths["tj"].authority), threshold=2)
    only_ed = sign_directory(signed_by(d, auths, "tj"), "ru", auths["ru"].keys[:1])
    assert verify_directory(only_ed.to_bytes(), trusted=None, anchor=anchor_of(d)).version == 1


# --- policy -----------------------------------------------------------------------

A, C = model.Kind.ALERT, model.Kind.CASE_MESSAGE
POLICY = (
    model.PolicyRule("office-a", frozenset({A, C}), frozenset({"office-b"})),
    model.PolicyRule("office-b", frozenset({C}), frozenset({"*"})),
)
POLICY_TABLE = [
    ("a-alert-b", "office-a", A, "office-b", True),
    ("a-case-b", "office-a", C, "office-b", True),
    ("a-consular-b", "office-a", model.Kind.CONSULAR_REQUEST, "office-b", False),
    ("a-alert-c", "office-a", A, "office-c", False),
    ("b-case-any", "office-b", C, "office-c", True),
    ("b-alert-a", "office-b", A, "office-a", False),
    ("b-to-self", "office-b", C, "office-b", False),
    ("unknown-sender", "office-x", C, "office-b", False),
]


@pytest.mark.parametrize(
    ("sender", "kind", "recipient", "allowed"),
    [row[1:] for row in POLICY_TABLE],
    ids=[row[0] for row in POLICY_TABLE],
)
def test_policy_table(
    auths: dict[str, Auth], sender: str, kind: model.Kind, recipient: str, allowed: bool
) -> None:
    d = dataclasses.replace(make(auths), policy=POLICY)
    d = decode_directory(encode_directory(d))  # the policy survives the wire
    assert d.allows(sender, kind, recipient) is allowed


def test_signed_bytes_never_reserialized(auths: dict[str, Auth]) -> None:
    d = make(auths)
    signed = signed_by(d, auths, "ru", "tj")
    # Same directory, serialized with an extra unknown field: its signatures must not carry over.
    other_raw = signed.raw + bytes([0xF8, 0x07, 0x01])  # field 127 varint 1 (unknown, ignored by parser)
    forged = encode_signed_directory(other_raw, signed.signatures)
    with pytest.raises(DirectorySignatureError):
        verify_directory(forged, trusted=None, anchor=anchor_of(d))
