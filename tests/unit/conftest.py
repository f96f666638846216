"""Fixtures for the envelope core: offices with freshly generated keys and a directory.

Keys come from ``exchange.core.primitives`` directly (no keystore). ``kit`` gives
tests the factory functions so they can build directory variants (revoked
keys, a hybrid-only minimum suite, ...) without importing this module.
``store`` and ``node`` give the gateway's unit tests one real SQLite audit store
and a gateway node on it (the same pair test_gateway_lookup and test_poison_writer
each built before).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pytest

from exchange.core import primitives
from exchange.core.directory import DirectoryState, TrustAnchor
from exchange.core.identity import generate
from exchange.core.model import (
    Algorithm,
    Authority,
    Directory,
    Gateway,
    KeyStatus,
    Kind,
    Limits,
    Office,
    PolicyRule,
    PublicKey,
    Suite,
)
from gateway.audit.sqlite import SQLiteAuditStore
from gateway.metrics import GatewayMetrics
from gateway.node import GatewayNode

NOW_MS: Final = 1_760_000_000_000
OFFICE_IDS: Final = ("ru-mvd-dushanbe", "tj-mvd-moscow", "tj-labour-moscow", "ru-embassy-dushanbe")
GATEWAY_ID: Final = "gw-dushanbe"


@dataclass(frozen=True)
class OfficeKeys:
    office: Office
    signing: tuple[primitives.PrivateKey, ...]
    encryption: Mapping[str, primitives.PrivateKey]

    @property
    def id(self) -> str:
        return self.office.id

    def signing_key(self, algorithm: Algorithm) -> primitives.PrivateKey:
        return next(k for k in self.signing if k.algorithm is algorithm)


def public_key(key: primitives.PrivateKey, **kwargs: int | KeyStatus) -> PublicKey:
    pub = primitives.public_bytes(key)
    return PublicKey(primitives.key_id(key.algorithm, pub), key.algorithm, pub, **kwargs)  # type: ignore[arg-type]


def make_office(
    office_id: str,
    *,
    private: Mapping[Algorithm, bytes] | None = None,
    not_before_ms: int = 0,
    not_after_ms: int = 0,
) -> OfficeKeys:
    """An office with one key of each algorithm (from ``private`` seeds when given)."""
    keys = {
        a: primitives.load_private(a, private[a]) if private else primitives.generate(a) for a in Algorithm
    }
    office = Office(
        id=office_id,
        keys=tuple(
            public_key(k, not_before_ms=not_before_ms, not_after_ms=not_after_ms) for k in keys.values()
        ),
        country=office_id[:2],
        display_name=office_id,
    )
    signing = tuple(k for a, k in keys.items() if a.is_signing)
    encryption = {
        primitives.key_id(k.algorithm, primitives.public_bytes(k)): k
        for a, k in keys.items()
        if not a.is_signing
    }
    return OfficeKeys(office, signing, encryption)


def make_gateway(gateway_id: str = GATEWAY_ID) -> tuple[Gateway, tuple[primitives.PrivateKey, ...]]:
    keys = (primitives.generate(Algorithm.ED25519), primitives.generate(Algorithm.ML_DSA_65))
    return Gateway(id=gateway_id, keys=tuple(public_key(k) for k in keys), country="ru"), keys


def allow_all() -> tuple[PolicyRule, ...]:
    return (PolicyRule("*", frozenset(Kind), frozenset({"*"})),)


def make_directory(
    offices: Sequence[OfficeKeys],
    *,
    gateways: Sequence[Gateway] = (),
    minimum_suite: Suite = Suite.CLASSIC,
    policy: tuple[PolicyRule, ...] | None = None,
    version: int = 1,
) -> Directory:
    return Directory(
        deployment="test",
        version=version,
        issued_ms=NOW_MS - 86_400_000,
        offices=tuple(o.office for o in offices),
        gateways=tuple(gateways),
        authorities=(),
        threshold=1,
        policy=allow_all() if policy is None else policy,
        limits=Limits(minimum_suite=minimum_suite),
    )


def replace_key(directory: Directory, owner: str, key_id: str, **changes: object) -> Directory:
    """A copy of ``directory`` with one key of office/gateway ``owner`` changed."""

    def fix(keys: tuple[PublicKey, ...]) -> tuple[PublicKey, ...]:
        return tuple(dataclasses.replace(k, **changes) if k.key_id == key_id else k for k in keys)  # type: ignore[arg-type]

    return dataclasses.replace(
        directory,
        version=directory.version + 1,
        offices=tuple(
            dataclasses.replace(o, keys=fix(o.keys)) if o.id == owner else o for o in directory.offices
        ),
        gateways=tuple(
            dataclasses.replace(g, keys=fix(g.keys)) if g.id == owner else g for g in directory.gateways
        ),
    )


class Kit:
    """Factory functions, handed to tests through the ``kit`` fixture."""

    now_ms = NOW_MS
    make_office = staticmethod(make_office)
    make_gateway = staticmethod(make_gateway)
    make_directory = staticmethod(make_directory)
    replace_key = staticmethod(replace_key)
    public_key = staticmethod(public_key)


@pytest.fixture(scope="session")
def kit() -> type[Kit]:
    return Kit


@pytest.fixture(scope="session")
def offices() -> dict[str, OfficeKeys]:
    return {office_id: make_office(office_id) for office_id in OFFICE_IDS}


@pytest.fixture(scope="session")
def gateway() -> tuple[Gateway, tuple[primitives.PrivateKey, ...]]:
    return make_gateway()


@pytest.fixture(scope="session")
def directory(
    offices: dict[str, OfficeKeys], gateway: tuple[Gateway, tuple[primitives.PrivateKey, ...]]
) -> Directory:
    return make_directory(list(offices.values()), gateways=[gateway[0]])


@pytest.fixture(scope="session")
def pq_directory(
    offices: dict[str, OfficeKeys], gateway: tuple[Gateway, tuple[primitives.PrivateKey, ...]]
) -> Directory:
    """The same offices, with hybrid-pq as the minimum suite."""
    return make_directory(list(offices.values()), gateways=[gateway[0]], minimum_suite=Suite.HYBRID_PQ)


# --- a gateway node on a real SQLite audit store (no NATS: handlers are driven directly) ---


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteAuditStore]:
    s = SQLiteAuditStore(tmp_path / "audit.db")
    yield s
    s.close()


@pytest.fixture
def node(store: SQLiteAuditStore) -> GatewayNode:
    anchor = TrustAnchor("gateway-test", (Authority(id="ru-embassy", keys=()),), 1)
    return GatewayNode(
        gateway="gw-test",
        identity=generate("gw-test", NOW_MS),
        directory=DirectoryState(anchor),
        store=store,
        metrics=GatewayMetrics("gw-test"),
        clock=lambda: NOW_MS,
    )
