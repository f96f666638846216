"""Create a whole deployment's keys and signed directory from an inventory.

Every authority, the gateway and every office get an identity in their own
encrypted keystore, and the authorities sign the first directory (m-of-n).
The inventory is data (TOML); nothing here names a country or an office.

Two ways to encrypt the keystores: :func:`create_owned_deployment` (what
``liaison deploy render`` uses) takes one passphrase per owner and refuses a
passphrase shared by two owners, so no one passphrase opens two authorities'
signing keys; :func:`create_deployment` encrypts every keystore under one
passphrase, for the lab, the demo and the tests, whose keys are throwaway.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exchange.core import identity as identities
from exchange.core import model
from exchange.core.directory import SignedDirectory, sign_directory
from exchange.core.errors import ConfigError
from keys import keystore
from keys.directory_file import save_signed

__all__ = [
    "Deployment",
    "Inventory",
    "create_deployment",
    "create_owned_deployment",
    "key_owners",
    "load_inventory",
]


@dataclass(frozen=True)
class Party:
    id: str
    country: str
    name: str
    agency: str = ""
    city: str = ""


@dataclass(frozen=True)
class Inventory:
    deployment: str
    threshold: int
    authorities: tuple[Party, ...]
    gateway: Party
    offices: tuple[Party, ...]
    policy: tuple[model.PolicyRule, ...]
    limits: model.Limits


@dataclass(frozen=True)
class Deployment:
    root: Path
    inventory: Inventory
    directory_file: Path
    passphrase_file: Path

    def keys_dir(self, owner: str) -> Path:
        return self.root / "keys" / owner


def _party(doc: Any, where: str) -> Party:
    if not isinstance(doc, dict):
        raise ConfigError(f"inventory: {where} must be a table")
    try:
        return Party(
            id=model.check_id(str(doc["id"]), where),
            country=str(doc.get("country", "")),
            name=str(doc.get("name", doc["id"])),
            agency=str(doc.get("agency", "")),
            city=str(doc.get("city", "")),
        )
    except (KeyError, ValueError) as e:
        raise ConfigError(f"inventory: {where}: {e}") from None


def load_inventory(path: Path) -> Inventory:
    try:
        doc = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"inventory {path}: {e}") from e
    try:
        policy = tuple(
            model.PolicyRule(
                sender=str(r["sender"]),
                kinds=frozenset(model.Kind.parse(k) for k in r["kinds"]),
                recipients=frozenset(str(x) for x in r["recipients"]),
            )
            for r in doc.get("policy", [])
        )
        lim = dict(doc.get("limits", {}))
        if "minimum_suite" in lim:
            lim["minimum_suite"] = model.Suite.parse(str(lim["minimum_suite"]))
        limits = model.Limits(**lim)
        return Inventory(
            deployment=str(doc["deployment"]),
            threshold=int(doc["threshold"]),
            authorities=tuple(_party(a, "authority") for a in doc["authorities"]),
            gateway=_party(doc["gateway"], "gateway"),
            offices=tuple(_party(o, "office") for o in doc["offices"]),
            policy=policy,
            limits=limits,
        )
    except (KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"inventory {path}: {e}") from None


def key_owners(inv: Inventory) -> tuple[str, ...]:
    """Every owner of a keystore: each authority, the gateway, each office (in that order)."""
    return tuple(
        dict.fromkeys([*(a.id for a in inv.authorities), inv.gateway.id, *(o.id for o in inv.offices)])
    )


def create_deployment(inv: Inventory, root: Path, passphrase: bytes, now_ms: int) -> Deployment:
    """Every identity and keystore under ``root``, all under ONE passphrase, and the signed directory v1.

    For the lab, the demo and the tests only (throwaway keys, one operator): the passphrase is
    written to ``root/passphrase``. A real deployment uses :func:`create_owned_deployment`.
    """
    root.mkdir(parents=True, exist_ok=True)
    passphrase_file = root / "passphrase"
    keystore.write_private_file(passphrase_file, passphrase + b"\n")
    deployment = Deployment(root, inv, root / "directory.pb", passphrase_file)
    _generate(inv, root, now_ms, lambda owner: passphrase)
    return deployment


def create_owned_deployment(
    inv: Inventory, root: Path, passphrases: Mapping[str, bytes], now_ms: int
) -> Path:
    """Every keystore under ``root/keys/<owner>`` encrypted under that owner's own passphrase.

    ``passphrases`` must name every owner of :func:`key_owners` and no two owners may share
    one (else one holder could open another authority's signing key and the m-of-n threshold
    would mean nothing). Writes no passphrase; returns the signed directory v1's path.
    """
    owners = key_owners(inv)
    if set(passphrases) != set(owners):
        missing = sorted(set(owners) - set(passphrases))
        extra = sorted(set(passphrases) - set(owners))
        raise ConfigError(f"one passphrase per keystore owner: missing {missing}, not owners {extra}")
    seen: dict[bytes, str] = {}
    for owner in owners:
        pw = passphrases[owner]
        if not pw:
            raise ConfigError(f"the passphrase of {owner} is empty")
        if pw in seen:
            raise ConfigError(f"{seen[pw]} and {owner} would share one passphrase; each owner needs its own")
        seen[pw] = owner
    root.mkdir(parents=True, exist_ok=True)
    return _generate(inv, root, now_ms, lambda owner: passphrases[owner])


def _generate(inv: Inventory, root: Path, now_ms: int, passphrase_of: Callable[[str], bytes]) -> Path:
    directory_file = root / "directory.pb"

    def make(owner: str) -> identities.OfficeIdentity:
        ident = identities.generate(owner, now_ms)
        keystore.create(root / "keys" / owner, ident, passphrase_of(owner))
        return ident

    authorities = {a.id: make(a.id) for a in inv.authorities}
    gateway = make(inv.gateway.id)
    offices = {o.id: make(o.id) for o in inv.offices}
    directory = model.Directory(
        deployment=inv.deployment,
        version=1,
        issued_ms=now_ms,
        offices=tuple(
            model.Office(
                id=o.id,
                keys=offices[o.id].public_keys(),
                country=o.country,
                agency=o.agency,
                city=o.city,
                display_name=o.name,
            )
            for o in inv.offices
        ),
        gateways=(
            model.Gateway(
                id=inv.gateway.id,
                keys=gateway.public_keys(),
                country=inv.gateway.country,
                display_name=inv.gateway.name,
            ),
        ),
        authorities=tuple(
            model.Authority(
                id=a.id, keys=_signing_only(authorities[a.id]), country=a.country, display_name=a.name
            )
            for a in inv.authorities
        ),
        threshold=inv.threshold,
        policy=inv.policy,
        limits=inv.limits,
    )
    signed: SignedDirectory | model.Directory = directory
    for a in inv.authorities[: inv.threshold]:
        signed = sign_directory(signed, a.id, authorities[a.id].signing_keys(model.Suite.HYBRID_PQ))
    assert isinstance(signed, SignedDirectory)
    save_signed(directory_file, signed)
    return directory_file


def _signing_only(ident: identities.OfficeIdentity) -> tuple[model.PublicKey, ...]:
    return tuple(k for k in ident.public_keys() if k.algorithm.is_signing)
