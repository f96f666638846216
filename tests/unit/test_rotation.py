"""Key rotation and revocation in the pure core: identities, directory updates, seal and verify.

A sender rotates its keys at NOW with a 7-day overlap: old keys RETIRING
until NOW + 7 d, new keys ACTIVE. Messages signed with the old key are
accepted until the window ends; new messages use the new key; mail wrapped
to the old encryption key still opens while the keystore keeps that key. A
key revoked at T refuses messages created at or after T.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from exchange.core import errors, identity, model
from exchange.core.envelope import Envelope
from exchange.core.model import Algorithm, CaseMessage, KeyStatus, Suite
from exchange.core.seal import open_envelope, seal, verify_envelope
from keys import keystore, rotation

NOW = 1_760_000_000_000
DAY = 86_400_000
HOUR = 3_600_000
MINUTES_10 = 600_000
OVERLAP_DAYS = 7
A, B = "ru-mvd-dushanbe", "tj-mvd-moscow"
PASS = b"rotation test passphrase"


def _directory(a: identity.OfficeIdentity, b: identity.OfficeIdentity) -> model.Directory:
    return model.Directory(
        deployment="test",
        version=1,
        issued_ms=NOW - 30 * DAY,
        offices=(
            model.Office(id=a.owner_id, keys=a.public_keys(), country="ru"),
            model.Office(id=b.owner_id, keys=b.public_keys(), country="tj"),
        ),
        gateways=(),
        authorities=(),
        threshold=1,
        policy=(model.PolicyRule("*", frozenset(model.Kind), frozenset({"*"})),),
    )


@dataclasses.dataclass(frozen=True)
class World:
    old_a: identity.OfficeIdentity  # A before rotation
    new_a: identity.OfficeIdentity  # A after `keys rotate` (old keys kept)
    b: identity.OfficeIdentity
    v1: model.Directory
    v2: model.Directory  # announces A's new keys, old ones RETIRING

    def old_key_ids(self) -> set[str]:
        return {k.key_id for k in self.old_a.keys}


@pytest.fixture(scope="module")
def world() -> World:
    old_a = identity.generate(A, NOW - 30 * DAY)
    b = identity.generate(B, NOW - 30 * DAY)
    new_a = rotation.rotate_identity(
        old_a, now_ms=NOW, algorithms=rotation.ROTATION_GROUPS["all"], overlap_days=OVERLAP_DAYS
    )
    v1 = _directory(old_a, b)
    v2 = rotation.announce_keys(
        dataclasses.replace(v1, version=2), A, new_a.public_keys(), now_ms=NOW, overlap_days=OVERLAP_DAYS
    )
    return World(old_a, new_a, b, v1, v2)


def _seal(
    sender: str,
    keys: identity.OfficeIdentity,
    recipient: str,
    directory: model.Directory,
    now_ms: int,
    *,
    all_keys: bool = False,
) -> Envelope:
    return seal(
        CaseMessage(case_id="ROT-1", text="rotation"),
        sender=sender,
        sender_keys=keys.all_signing_keys() if all_keys else keys.signing_keys(Suite.HYBRID_PQ),
        recipients=[recipient],
        directory=directory,
        suite=Suite.HYBRID_PQ,
        now_ms=now_ms,
        ttl_s=3600,
    )


# --- identity and keystore ---------------------------------------------------------------


def test_rotate_identity_keeps_old_keys_and_adds_newer_ones(world: World) -> None:
    assert len(world.new_a.keys) == 8
    assert world.old_key_ids() < {k.key_id for k in world.new_a.keys}
    for algorithm in Algorithm:
        newest = world.new_a.key(algorithm)
        assert newest.key_id not in world.old_key_ids()
        assert newest.not_before_ms == NOW
        old = world.old_a.key(algorithm).key_id
        kept = next(k for k in world.new_a.keys if k.key_id == old)
        assert kept.not_after_ms == NOW + OVERLAP_DAYS * DAY
    assert set(world.new_a.encryption_keys()) >= {
        k.key_id for k in world.old_a.keys if not k.algorithm.is_signing
    }


@pytest.mark.parametrize(
    ("group", "rotated"),
    [
        ("signing", {Algorithm.ED25519, Algorithm.ML_DSA_65}),
        ("encryption", {Algorithm.X25519, Algorithm.ML_KEM_768_X25519}),
        ("all", set(Algorithm)),
    ],
)
def test_rotate_only_the_chosen_group(world: World, group: str, rotated: set[Algorithm]) -> None:
    ident = rotation.rotate_identity(world.old_a, now_ms=NOW, algorithms=rotation.ROTATION_GROUPS[group])
    changed = {a for a in Algorithm if ident.key(a).key_id != world.old_a.key(a).key_id}
    assert changed == rotated


def test_rotating_twice_in_one_millisecond_still_orders_keys(world: World) -> None:
    twice = rotation.rotate_identity(world.new_a, now_ms=NOW, algorithms=[Algorithm.ED25519])
    assert twice.key(Algorithm.ED25519).not_before_ms == NOW + 1
    assert len(twice.keys) == 9


def test_keystore_update_round_trip(tmp_path: Path, world: World) -> None:
    keystore.create(tmp_path / "ks", world.old_a, PASS)
    keystore.update(tmp_path / "ks", world.new_a, PASS)
    opened = keystore.open_keystore(tmp_path / "ks", PASS)
    assert [k.key_id for k in opened.keys] == [k.key_id for k in world.new_a.keys]
    assert opened.key(Algorithm.ED25519).key_id == world.new_a.key(Algorithm.ED25519).key_id


@pytest.mark.parametrize(
    ("make", "passphrase", "error"),
    [
        (lambda w: w.old_a, b"wrong", errors.WrongPassphraseError),
        (lambda w: w.b, PASS, errors.KeystoreError),
        (lambda w: identity.OfficeIdentity(A, w.new_a.keys[4:]), PASS, errors.KeystoreError),
    ],
    ids=["wrong-passphrase", "other-owner", "drops-old-keys"],
)
def test_keystore_update_refuses(tmp_path: Path, world: World, make, passphrase: bytes, error: type) -> None:  # type: ignore[no-untyped-def]
    keystore.create(tmp_path / "ks", world.new_a, PASS)
    before = (tmp_path / "ks" / keystore.KEYSTORE_FILE).read_bytes()
    with pytest.raises(error):
        keystore.update(tmp_path / "ks", make(world), passphrase)
    assert (tmp_path / "ks" / keystore.KEYSTORE_FILE).read_bytes() == before


# --- directory update ----------------------------------------------------------------------


def test_announce_marks_old_retiring_and_new_active(world: World) -> None:
    office = world.v2.office(A)
    assert office is not None
    by_id = {k.key_id: k for k in office.keys}
    for key_id in world.old_key_ids():
        assert by_id[key_id].status is KeyStatus.RETIRING
        assert by_id[key_id].not_after_ms == NOW + OVERLAP_DAYS * DAY
    for algorithm in Algorithm:
        current = office.current_key(algorithm, NOW)
        assert current is not None
        assert current.key_id == world.new_a.key(algorithm).key_id
    assert world.v2.office(B) == world.v1.office(B)


@pytest.mark.parametrize(
    ("owner", "keys_of", "error"),
    [
        ("no-such-office", lambda w: w.new_a, errors.UnknownOfficeError),
        (A, lambda w: w.old_a, errors.ConfigError),  # nothing new
    ],
    ids=["unknown-owner", "no-new-keys"],
)
def test_announce_refuses(world: World, owner: str, keys_of, error: type) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error):
        rotation.announce_keys(world.v1, owner, keys_of(world).public_keys(), now_ms=NOW)


def test_announce_of_signing_keys_only_leaves_encryption_active(world: World) -> None:
    ident = rotation.rotate_identity(world.old_a, now_ms=NOW, algorithms=rotation.ROTATION_GROUPS["signing"])
    d = rotation.announce_keys(world.v1, A, ident.public_keys(), now_ms=NOW)
    office = d.office(A)
    assert office is not None
    statuses = {(k.algorithm.is_signing, k.status) for k in office.keys}
    assert statuses == {(True, KeyStatus.ACTIVE), (True, KeyStatus.RETIRING), (False, KeyStatus.ACTIVE)}


# --- signing keys during the overlap ---------------------------------------------------------


@pytest.mark.parametrize(
    ("created", "accepted"),
    [
        (NOW - HOUR, True),  # sealed before the rotation
        (NOW + DAY, True),  # inside the overlap
        (NOW + OVERLAP_DAYS * DAY - 1, True),  # last millisecond of the window
        (NOW + OVERLAP_DAYS * DAY, False),  # the window has ended
        (NOW + 30 * DAY, False),
    ],
    ids=["before-rotation", "in-overlap", "last-ms", "window-ended", "long-after"],
)
def test_old_signing_key_accepted_until_the_window_ends(world: World, created: int, accepted: bool) -> None:
    # The sender still holds only its old keys and the old directory (an office not yet restarted).
    envelope = _seal(A, world.old_a, B, world.v1, created)
    assert set(envelope.header.context.signing_key_ids) <= world.old_key_ids()
    if accepted:
        verify_envelope(envelope, directory=world.v2, now_ms=created)
    else:
        with pytest.raises(errors.KeyNotValidError, match="outside its validity window"):
            verify_envelope(envelope, directory=world.v2, now_ms=created)


def test_new_messages_use_the_new_keys(world: World) -> None:
    for all_keys in (False, True):  # newest keys only, or every key held: the directory decides
        envelope = _seal(A, world.new_a, B, world.v2, NOW + HOUR, all_keys=all_keys)
        expected = {world.new_a.key(a).key_id for a in Suite.HYBRID_PQ.signing_algorithms}
        assert set(envelope.header.context.signing_key_ids) == expected
        verify_envelope(envelope, directory=world.v2, now_ms=NOW + HOUR)


def test_old_keys_alone_seal_only_within_the_overlap(world: World) -> None:
    """A node whose keystore has not been rotated yet keeps sending with its RETIRING key."""
    envelope = _seal(A, world.old_a, B, world.v2, NOW + HOUR)
    assert set(envelope.header.context.signing_key_ids) <= world.old_key_ids()
    with pytest.raises(errors.KeyNotValidError, match="no private key"):
        _seal(A, world.old_a, B, world.v2, NOW + (OVERLAP_DAYS + 1) * DAY)


def test_signing_keys_for_follows_the_directory(world: World) -> None:
    def ids(d: model.Directory) -> set[str]:
        keys = world.new_a.signing_keys_for(d.office(A), Suite.HYBRID_PQ, NOW + HOUR)
        return {k.key_id for k in world.new_a.keys if k.key in keys}

    # Rotated keystore, directory not yet updated: keep signing with the listed (old) keys.
    assert ids(world.v1) <= world.old_key_ids()
    assert ids(world.v2).isdisjoint(world.old_key_ids())
    assert len(world.new_a.signing_keys_for(None, Suite.CLASSIC, NOW)) == 1


# --- encryption keys ----------------------------------------------------------------------------


def test_mail_to_the_old_encryption_key_still_opens(world: World) -> None:
    # B sealed against v1 (A's old KEM key) just before the update; A opens it after rotating.
    envelope = _seal(B, world.b, A, world.v1, NOW - MINUTES_10)
    old_kem = world.old_a.encryption_key(Suite.HYBRID_PQ).key_id
    assert envelope.header.wrapped_for(A).key_id == old_kem  # type: ignore[union-attr]
    opened = open_envelope(
        envelope, me=A, my_keys=world.new_a.encryption_keys(), directory=world.v2, now_ms=NOW + MINUTES_10
    )
    assert opened.body == CaseMessage(case_id="ROT-1", text="rotation")
    # A keystore that had dropped the old key could not open it: why `keys rotate` keeps it.
    fresh_only = {k: v for k, v in world.new_a.encryption_keys().items() if k != old_kem}
    with pytest.raises(errors.DecryptError):
        open_envelope(envelope, me=A, my_keys=fresh_only, directory=world.v2, now_ms=NOW + MINUTES_10)


def test_new_mail_is_wrapped_to_the_new_encryption_key(world: World) -> None:
    envelope = _seal(B, world.b, A, world.v2, NOW + HOUR)
    new_kem = world.new_a.encryption_key(Suite.HYBRID_PQ).key_id
    assert envelope.header.wrapped_for(A).key_id == new_kem  # type: ignore[union-attr]
    open_envelope(
        envelope, me=A, my_keys=world.new_a.encryption_keys(), directory=world.v2, now_ms=NOW + HOUR
    )


# --- revocation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("created", "refused"),
    [
        (NOW - 1, False),
        (NOW, True),
        (NOW + HOUR, True),
    ],
    ids=["created-before-T", "created-at-T", "created-after-T"],
)
def test_revoked_key_refuses_messages_from_T(world: World, created: int, refused: bool) -> None:
    ed25519 = world.b.key(Algorithm.ED25519).key_id
    revoked = rotation.set_key_status(world.v1, ed25519, KeyStatus.REVOKED, at_ms=NOW)
    envelope = _seal(B, world.b, A, world.v1, created)
    if refused:
        with pytest.raises(errors.KeyRevokedError):
            verify_envelope(envelope, directory=revoked, now_ms=created + 1)
    else:
        verify_envelope(envelope, directory=revoked, now_ms=created + 1)


def test_revoked_sender_cannot_seal(world: World) -> None:
    ed25519 = world.b.key(Algorithm.ED25519).key_id
    revoked = rotation.set_key_status(world.v1, ed25519, KeyStatus.REVOKED, at_ms=NOW)
    with pytest.raises(errors.KeyNotValidError):
        _seal(B, world.b, A, revoked, NOW + 1)


@pytest.mark.parametrize(
    ("key_id", "status", "at_ms", "error"),
    [
        ("nope", KeyStatus.REVOKED, NOW, errors.ConfigError),
        (None, KeyStatus.REVOKED, 0, errors.ConfigError),
    ],
    ids=["unknown-key", "revoked-without-time"],
)
def test_set_key_status_refuses(
    world: World, key_id: str | None, status: KeyStatus, at_ms: int, error: type[Exception]
) -> None:
    kid = key_id or world.b.key(Algorithm.ED25519).key_id
    with pytest.raises(error):
        rotation.set_key_status(world.v1, kid, status, at_ms=at_ms)


def test_reactivating_clears_the_revocation_time(world: World) -> None:
    kid = world.b.key(Algorithm.ED25519).key_id
    revoked = rotation.set_key_status(world.v1, kid, KeyStatus.REVOKED, at_ms=NOW)
    back = rotation.set_key_status(revoked, kid, KeyStatus.ACTIVE)
    office = back.office(B)
    assert office is not None
    key = office.key(kid)
    assert key is not None
    assert (key.status, key.revoked_at_ms) == (KeyStatus.ACTIVE, 0)


@pytest.mark.parametrize(
    ("stored", "refused"),
    [
        (0, False),
        (NOW - 1, False),
        (NOW, True),
        (NOW + HOUR, True),
    ],
    ids=["stored-unknown", "stored-before-T", "stored-at-T", "stored-after-T"],
)
def test_revoked_key_is_judged_no_earlier_than_the_backbone_stored_it(
    world: World, stored: int, refused: bool
) -> None:
    """Created (by the sender's word) before T: what counts is when JetStream stored it."""
    ed25519 = world.b.key(Algorithm.ED25519).key_id
    revoked = rotation.set_key_status(world.v1, ed25519, KeyStatus.REVOKED, at_ms=NOW)
    envelope = _seal(B, world.b, A, world.v1, NOW - 5_000)
    now = max(stored, NOW) + 1
    if refused:
        with pytest.raises(errors.KeyRevokedError):
            verify_envelope(envelope, directory=revoked, now_ms=now, stored_ms=stored)
    else:
        verify_envelope(envelope, directory=revoked, now_ms=now, stored_ms=stored)
