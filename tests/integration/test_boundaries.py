"""Boundaries that need a real server: the CLI and the SDK against a real grpc.aio server.

The server is ``exchange.runtime.grpcutil.new_server`` (mutual TLS as the
nodes run it, health and reflection, no Liaison service): a handshake the
server refuses and a status the server answers with each come out of the CLI
as one ``error:`` line and exit status 2, never a traceback; unreadable
server TLS files are a ``ConfigError`` before anything listens.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from exchange.client.connection import ClientTls
from exchange.client.sdk import AsyncClient
from exchange.core.errors import ConfigError, RemoteError
from exchange.runtime.grpcutil import new_server
from keys import pki
from liaison.cli import main

CA_PW = b"test-ca-passphrase"  # the deployment CA key is always encrypted


@dataclass(frozen=True)
class Site:
    port: int
    agency: ClientTls  # issued by the server's CA
    foreign: ClientTls  # issued by another CA


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    ca = pki.create_ca(tmp_path / "site", "site", passphrase=CA_PW)
    node = pki.issue(tmp_path / "site", "node", "office", ca_passphrase=CA_PW)
    agency = pki.issue(tmp_path / "site", "client", "agency", ca_passphrase=CA_PW)
    other_ca = pki.create_ca(tmp_path / "other", "other", passphrase=CA_PW)
    other = pki.issue(tmp_path / "other", "client", "agency", ca_passphrase=CA_PW)
    server, _, port = new_server("127.0.0.1:0", [], (ca.cert, node.cert, node.key))
    await server.start()
    try:
        yield Site(
            port, ClientTls(ca.cert, agency.cert, agency.key), ClientTls(other_ca.cert, other.cert, other.key)
        )
    finally:
        await server.stop(None)


async def _cli(capsys: pytest.CaptureFixture[str], site: Site, tls: ClientTls) -> tuple[int, str]:
    argv = ["status", "m-1", "--endpoint", f"127.0.0.1:{site.port}", "--timeout", "5"]
    argv += ["--ca", str(tls.ca), "--cert", str(tls.cert), "--key", str(tls.key)]
    code = await asyncio.to_thread(main, argv)  # the CLI runs its own event loop
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("who", "status"),
    [
        pytest.param("foreign", "error: UNAVAILABLE", id="handshake-refused"),
        pytest.param("agency", "error: UNIMPLEMENTED", id="status-answered"),
    ],
)
async def test_cli_against_a_real_server(
    capsys: pytest.CaptureFixture[str], site: Site, who: str, status: str
) -> None:
    code, err = await _cli(capsys, site, getattr(site, who))
    assert code == 2
    assert err.count("\n") == 1, err
    assert err.startswith(status), err


async def test_sdk_maps_the_refused_handshake(site: Site) -> None:
    async with AsyncClient(f"127.0.0.1:{site.port}", tls=site.foreign, timeout=5) as client:
        with pytest.raises(RemoteError, match=r"^UNAVAILABLE"):
            await client.offices()


async def test_server_tls_files_missing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read gRPC TLS files"):
        new_server("127.0.0.1:0", [], (tmp_path / "ca.crt", tmp_path / "node.crt", tmp_path / "node.key"))
