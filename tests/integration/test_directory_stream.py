"""``publish_newest`` against a real nats-server: the stream ends on the newest directory, never older.

Real JetStream (the ``transport`` fixture), real signed directories (the unit
tests' authorities). The restart attack through whole node processes is in
test_directory_restart.py; these are the cases a lab cannot stage cheaply: a
gateway that lost its copies, and a stream holding what it cannot verify.
"""

from __future__ import annotations

import pytest

from exchange.core import primitives
from exchange.core.directory import DirectoryState, SignedDirectory, TrustAnchor
from exchange.nats.transport import Transport
from exchange.runtime.dirstore import publish_newest
from tests.unit.test_directory import SIGNING, Auth, make, signed_by


@pytest.fixture(scope="module")
def auths() -> dict[str, Auth]:
    return {name: Auth(name, tuple(primitives.generate(a) for a in SIGNING)) for name in ("ru", "tj", "un")}


def _state(v1: SignedDirectory) -> DirectoryState:
    state = DirectoryState(TrustAnchor.from_directory(v1.directory))
    state.apply(v1.to_bytes())
    return state


async def test_an_empty_stream_gets_ours(transport: Transport, auths: dict[str, Auth]) -> None:
    v1 = signed_by(make(auths, version=1), auths, "ru", "tj")
    await publish_newest(transport, _state(v1), lambda _: None)
    assert await transport.get_directory() == v1.to_bytes()


async def test_a_newer_stream_directory_is_adopted_and_saved_not_overwritten(
    transport: Transport, auths: dict[str, Auth]
) -> None:
    """A gateway that lost its copies (back on v1) while the stream holds v3."""
    v1, v3 = (signed_by(make(auths, version=v), auths, "ru", "tj") for v in (1, 3))
    await transport.put_directory(v3.to_bytes())
    state, saved = _state(v1), []
    await publish_newest(transport, state, saved.append)
    assert state.directory.version == 3
    assert [s.version for s in saved] == [3]
    assert await transport.get_directory() == v3.to_bytes()


async def test_an_older_stream_directory_is_replaced(transport: Transport, auths: dict[str, Auth]) -> None:
    v1, v2 = (signed_by(make(auths, version=v), auths, "ru", "tj") for v in (1, 2))
    await transport.put_directory(v1.to_bytes())
    state = _state(v1)
    state.apply(v2.to_bytes())
    await publish_newest(transport, state, lambda _: None)
    assert await transport.get_directory() == v2.to_bytes()


async def test_a_newer_directory_that_does_not_verify_is_left_alone(
    transport: Transport, auths: dict[str, Auth]
) -> None:
    v1 = signed_by(make(auths, version=1), auths, "ru", "tj")
    under_signed = signed_by(make(auths, version=7), auths, "ru")  # below the threshold of 2
    await transport.put_directory(under_signed.to_bytes())
    state = _state(v1)
    await publish_newest(transport, state, lambda _: pytest.fail("nothing to save"))
    assert state.directory.version == 1
    assert await transport.get_directory() == under_signed.to_bytes()


async def test_garbage_in_the_stream_is_replaced(transport: Transport, auths: dict[str, Auth]) -> None:
    """Even within JetStream's duplicate window of our own earlier publish of the same bytes."""
    v1 = signed_by(make(auths, version=1), auths, "ru", "tj")
    await publish_newest(transport, _state(v1), lambda _: None)
    await transport.put_directory(b"\x00not a directory")
    await publish_newest(transport, _state(v1), lambda _: None)
    assert await transport.get_directory() == v1.to_bytes()
