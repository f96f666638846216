"""NatsServer against the real binary: start, config, monitoring, restart, kill, clear start errors."""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from exchange.core.errors import ConfigError, TransportError
from exchange.core.wire import OUT_STREAM, out_subject
from exchange.nats.transport import PubAck, Transport
from liaison.natsserver import NatsServer, find_nats_server_binary, free_port

ConnectTransport = Callable[..., Awaitable[Transport]]


async def _publish_until_up(transport: Transport) -> PubAck:
    while True:
        try:
            return await transport.publish(out_subject("a"), b"kept", "keep-1", 2, ack_timeout=1)
        except TransportError:
            await asyncio.sleep(0.1)


def _varz(server: NatsServer) -> dict[str, object]:
    assert server.http_url is not None
    with urllib.request.urlopen(server.http_url + "/varz", timeout=5) as response:
        data: dict[str, object] = json.load(response)
    return data


def test_binary_is_found() -> None:
    binary = find_nats_server_binary()
    assert binary.name.startswith("nats-server")


def test_starts_with_jetstream_sync_always_and_name(tmp_path: Path) -> None:
    with NatsServer(tmp_path, server_name="hub-test", http_port=0) as server:
        assert server.running
        assert server.url == f"nats://127.0.0.1:{server.port}"
        assert server.port != 4222
        varz = _varz(server)
        assert varz["server_name"] == "hub-test"
        jetstream = varz["jetstream"]
        assert isinstance(jetstream, dict)
        assert jetstream["config"]["sync_always"] is True
        assert "sync_interval: always" in server.config_path.read_text()
    assert not server.running


def test_given_port_is_used(tmp_path: Path) -> None:
    port = free_port()
    with NatsServer(tmp_path, port=port) as server:
        assert server.port == port
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            assert sock.recv(4) == b"INFO"


def test_stop_and_kill_are_idempotent(tmp_path: Path) -> None:
    server = NatsServer(tmp_path).start()
    pid = server.pid
    server.kill()
    server.kill()
    server.stop()
    assert not server.running
    assert pid is not None


@pytest.mark.parametrize("kill", [False, True], ids=["sigterm", "sigkill"])
async def test_restart_keeps_port_and_data(
    tmp_path: Path, connect_transport: ConnectTransport, kill: bool
) -> None:
    async with NatsServer(tmp_path) as server:
        port = server.port
        transport: Transport = await connect_transport(server, reconnect_time_wait=0.1)
        await transport.ensure_streams()
        await transport.publish(out_subject("a"), b"kept", "keep-1", 2)
        await asyncio.to_thread(server.restart, kill=kill)
        assert server.port == port
        again = await asyncio.wait_for(_publish_until_up(transport), timeout=20)
        info = await transport.js.stream_info(OUT_STREAM)
        assert info.state.messages == 1
        assert again.duplicate  # dedup table survived the restart


async def test_auth_config_is_enforced(tmp_path: Path, connect_transport: ConnectTransport) -> None:
    auth = 'authorization { users = [ { user: "office-a", password: "pw-a" } ] }'
    async with NatsServer(tmp_path, auth_config=auth) as server:
        with pytest.raises(TransportError):
            await connect_transport(server, connect_timeout=1)
        ok = await connect_transport(server, user="office-a", password="pw-a")
        assert ok.is_connected


@pytest.mark.parametrize(
    ("auth_config", "extra_config", "expected"),
    [
        ("authorization { users = [ { user: ", "", "exited with code"),
        (None, "no_such_option_xyz: 1", "no_such_option_xyz"),
        (None, "jetstream { max_file_store: banana }", "exited with code"),
    ],
    ids=["truncated-auth-block", "unknown-option", "bad-jetstream-value"],
)
def test_bad_config_gives_clear_error_with_log_tail(
    tmp_path: Path, auth_config: str | None, extra_config: str, expected: str
) -> None:
    server = NatsServer(tmp_path, auth_config=auth_config, extra_config=extra_config, start_timeout=10)
    with pytest.raises(ConfigError, match=expected) as info:
        server.start()
    assert str(server.config_path) in str(info.value)
    assert not server.running


def test_missing_binary_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIAISON_NATS_SERVER", str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match="not an executable"):
        NatsServer(tmp_path).start()


def test_port_before_start_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(TransportError, match="no port yet"):
        _ = NatsServer(tmp_path).url
