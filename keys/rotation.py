"""Key rotation and revocation: pure functions over identities and directories.

What it does: makes the next keys of an identity (``rotate_identity``: old
keys are kept, so mail in flight to an old encryption key still opens and the
old signing key can still sign during the overlap); announces them in a
directory draft (``announce_keys``: new keys ACTIVE, the keys they replace
RETIRING with ``not_after = now + overlap``); and sets a key's status
(``set_key_status``: active, retiring, or revoked from time T).

Why the overlap works: senders seal with ``current_key`` (the newest ACTIVE
key valid now), so new messages use the new key at once, while verifiers
accept any key of the sender that is inside its window at the message's
creation time, so messages signed with the old key are accepted until
``not_after``. A revoked key refuses messages created at or after T.

What it does not: no I/O and no clock (``now_ms`` is passed in), no
signing of the directory (``exchange.core.directory``) and no version bump (the
``directory next-version`` flow does that).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Final

from exchange.core import model, primitives
from exchange.core.errors import ConfigError, DirectoryInvalidError, KeystoreError, UnknownOfficeError
from exchange.core.identity import DEFAULT_VALID_DAYS, IdentityKey, OfficeIdentity

__all__ = [
    "DAY_MS",
    "DEFAULT_OVERLAP_DAYS",
    "ROTATION_GROUPS",
    "announce_keys",
    "rotate_identity",
    "set_key_status",
]

DAY_MS: Final = 86_400_000
DEFAULT_OVERLAP_DAYS: Final = 7
ROTATION_GROUPS: Final[dict[str, tuple[model.Algorithm, ...]]] = {
    "signing": (model.Algorithm.ED25519, model.Algorithm.ML_DSA_65),
    "encryption": (model.Algorithm.X25519, model.Algorithm.ML_KEM_768_X25519),
    "all": tuple(model.Algorithm),
}

Holder = model.Office | model.Gateway | model.Authority


def _end(not_after_ms: int, end_ms: int) -> int:
    """The earlier of a window end (0 = none) and ``end_ms``."""
    return end_ms if not_after_ms == 0 else min(not_after_ms, end_ms)


def rotate_identity(
    identity: OfficeIdentity,
    *,
    now_ms: int,
    algorithms: Iterable[model.Algorithm],
    valid_days: int = DEFAULT_VALID_DAYS,
    overlap_days: int = DEFAULT_OVERLAP_DAYS,
) -> OfficeIdentity:
    """``identity`` plus a fresh key of each of ``algorithms``, valid from ``now_ms``.

    Every key is kept (an old encryption key still opens mail sealed before the
    directory announced its successor); the replaced keys' windows end at
    ``now + overlap`` at the latest. A new key's ``not_before`` is later than
    every key it replaces, so ``OfficeIdentity.key`` always picks it.
    """
    chosen = tuple(dict.fromkeys(algorithms))
    if not chosen:
        raise KeystoreError("nothing to rotate: no algorithms chosen")
    if valid_days <= 0 or overlap_days < 0:
        raise KeystoreError("valid_days must be positive and overlap_days not negative")
    end = now_ms + overlap_days * DAY_MS
    kept = tuple(
        dataclasses.replace(k, not_after_ms=_end(k.not_after_ms, end)) if k.algorithm in chosen else k
        for k in identity.keys
    )
    fresh = []
    for algorithm in chosen:
        start = max([now_ms, *(k.not_before_ms + 1 for k in identity.keys if k.algorithm is algorithm)])
        fresh.append(IdentityKey(primitives.generate(algorithm), start, start + valid_days * DAY_MS))
    return OfficeIdentity(identity.owner_id, (*kept, *fresh))


def _holder(directory: model.Directory, owner: str) -> Holder:
    holder = directory.office(owner) or directory.gateway(owner) or directory.authority(owner)
    if holder is None:
        raise UnknownOfficeError(
            f"no office, gateway or authority {owner!r} in directory v{directory.version}"
        )
    return holder


def _with_holder(directory: model.Directory, holder: Holder) -> model.Directory:
    if isinstance(holder, model.Office):
        offices = tuple(holder if o.id == holder.id else o for o in directory.offices)
        return dataclasses.replace(directory, offices=offices)
    if isinstance(holder, model.Gateway):
        gateways = tuple(holder if g.id == holder.id else g for g in directory.gateways)
        return dataclasses.replace(directory, gateways=gateways)
    authorities = tuple(holder if a.id == holder.id else a for a in directory.authorities)
    return dataclasses.replace(directory, authorities=authorities)


def announce_keys(
    directory: model.Directory,
    owner: str,
    public_keys: Iterable[model.PublicKey],
    *,
    now_ms: int,
    overlap_days: int = DEFAULT_OVERLAP_DAYS,
) -> model.Directory:
    """Add ``owner``'s keys that the directory does not list yet as ACTIVE; retire the ones they replace.

    ``public_keys`` may be the owner's whole public identity (``keys rotate`` or
    ``keys export-public`` output): keys the directory already lists are left
    as they are. Each ACTIVE key of a rotated algorithm becomes RETIRING with
    ``not_after = now + overlap`` (never later than its own end). Authorities
    list signing keys only. Raises ConfigError when there is nothing new.
    """
    if overlap_days < 0:
        raise ConfigError("overlap_days must not be negative")
    holder = _holder(directory, owner)
    new = [
        dataclasses.replace(k, status=model.KeyStatus.ACTIVE, revoked_at_ms=0)
        for k in public_keys
        if holder.key(k.key_id) is None
        and (k.algorithm.is_signing or not isinstance(holder, model.Authority))
    ]
    if not new:
        raise ConfigError(f"no new keys for {owner}: the directory lists all of them already")
    if len({k.key_id for k in new}) != len(new):
        raise ConfigError(f"the new keys of {owner} repeat a key id")
    rotated = {k.algorithm for k in new}
    end = now_ms + overlap_days * DAY_MS
    retired = tuple(
        dataclasses.replace(k, status=model.KeyStatus.RETIRING, not_after_ms=_end(k.not_after_ms, end))
        if k.algorithm in rotated and k.status is model.KeyStatus.ACTIVE
        else k
        for k in holder.keys
    )
    try:
        return _with_holder(directory, dataclasses.replace(holder, keys=(*retired, *new)))
    except ValueError as e:
        raise DirectoryInvalidError(str(e)) from e


def set_key_status(
    directory: model.Directory, key_id: str, status: model.KeyStatus, *, at_ms: int = 0
) -> model.Directory:
    """Set one key's status, wherever it is listed; REVOKED needs the time ``at_ms`` it applies from."""
    if status is model.KeyStatus.REVOKED and at_ms <= 0:
        raise ConfigError(f"revoking key {key_id} needs a revocation time")
    revoked_at = at_ms if status is model.KeyStatus.REVOKED else 0
    found = False

    def update(keys: tuple[model.PublicKey, ...]) -> tuple[model.PublicKey, ...]:
        nonlocal found
        out = []
        for k in keys:
            if k.key_id == key_id:
                found = True
                k = dataclasses.replace(k, status=status, revoked_at_ms=revoked_at)  # noqa: PLW2901
            out.append(k)
        return tuple(out)

    changed = dataclasses.replace(
        directory,
        offices=tuple(dataclasses.replace(o, keys=update(o.keys)) for o in directory.offices),
        gateways=tuple(dataclasses.replace(g, keys=update(g.keys)) for g in directory.gateways),
        authorities=tuple(dataclasses.replace(a, keys=update(a.keys)) for a in directory.authorities),
    )
    if not found:
        raise ConfigError(f"no key {key_id} in directory v{directory.version}")
    return changed
