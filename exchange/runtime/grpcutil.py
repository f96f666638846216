"""gRPC plumbing shared by the office node and the gateway.

Maps ``LiaisonError`` to its one gRPC status (never a traceback to the
client), builds server credentials, adds health checking and reflection,
and sets the size limits every server shares.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar

import grpc
import structlog
from grpc_health.v1 import health, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from exchange.core.codec.health import HEALTH_SERVICE, NOT_SERVING, REFLECTION_SERVICE
from exchange.core.errors import AccessDeniedError, ClientBusyError, ConfigError, LiaisonError, map_exceptions
from exchange.core.wire import MAX_GRPC_MESSAGE_BYTES

__all__ = [
    "Access",
    "Peer",
    "grpc_errors",
    "grpc_stream_errors",
    "new_server",
    "peer_of",
    "status_of",
]

SPIFFE_PREFIX: Final = "spiffe://liaison/"


@dataclass(frozen=True)
class Peer:
    """Who is calling, from the client certificate's URI SAN ``spiffe://liaison/<kind>/<name>``."""

    kind: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}"


def peer_of(context: grpc.aio.ServicerContext[Any, Any]) -> Peer | None:
    """The authenticated peer (mutual TLS), or None on a plaintext server."""
    auth = context.auth_context() or {}
    for san in auth.get("x509_subject_alternative_name", []):
        text = san.decode(errors="replace") if isinstance(san, bytes) else str(san)
        if text.startswith(SPIFFE_PREFIX):
            kind, _, name = text.removeprefix(SPIFFE_PREFIX).partition("/")
            return Peer(kind, name)
    return None


@dataclass(frozen=True)
class Access:
    """Which certificate roles may call which method: ``"kind:name"`` or ``"kind:*"`` patterns.

    A method without a rule falls back to ``default``. Checked only on mutual-TLS
    servers: a plaintext server (development) has no peers to check.
    """

    rules: Mapping[str, frozenset[str]] = field(default_factory=dict)
    default: frozenset[str] = frozenset()

    def check(self, peer: Peer | None, method: str) -> None:
        allowed = self.rules.get(method, self.default)
        if peer is None:
            raise AccessDeniedError(f"{method} needs a client certificate with a role")
        if f"{peer.kind}:{peer.name}" in allowed or f"{peer.kind}:*" in allowed:
            return
        raise AccessDeniedError(f"{peer} may not call {method}")


# Calls in progress by (servicer, client): per server, so two servers in one process (tests,
# the in-process lab tools) never share one client's budget.
_in_flight: dict[tuple[int, str], int] = {}


@contextlib.contextmanager
def _client_slot(servicer: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Iterator[None]:
    peer = peer_of(context)
    who = str(peer) if peer else context.peer()
    key = (id(servicer), who)
    if _in_flight.get(key, 0) >= MAX_CALLS_PER_CLIENT:
        raise ClientBusyError(f"{who} has {MAX_CALLS_PER_CLIENT} calls in progress already")
    _in_flight[key] = _in_flight.get(key, 0) + 1
    try:
        yield
    finally:
        _in_flight[key] -= 1
        if not _in_flight[key]:
            del _in_flight[key]


def _authorize(servicer: Any, context: grpc.aio.ServicerContext[Any, Any], method: str) -> None:
    access: Access | None = getattr(servicer, "access", None)
    if access is not None:
        access.check(peer_of(context), method)


log = structlog.get_logger()

MAX_CONCURRENT_RPCS: Final = 1024
# One client certificate (or address on a plaintext server) may hold this many calls at once,
# streams included; more get RESOURCE_EXHAUSTED, so one agency system cannot take the node.
# Give each agency system its own certificate so each has its own budget.
MAX_CALLS_PER_CLIENT: Final = 64

T = TypeVar("T")


def status_of(error: LiaisonError) -> grpc.StatusCode:
    return getattr(grpc.StatusCode, error.grpc_status, grpc.StatusCode.INTERNAL)


def grpc_errors(
    fn: Callable[[Any, Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[T]],
) -> Callable[[Any, Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[T]]:
    """Unary handler wrapper: a LiaisonError becomes its status with a one-line message."""

    @functools.wraps(fn)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> T:
        try:
            _authorize(self, context, fn.__name__)
            with _client_slot(self, context):
                return await fn(self, request, context)
        except LiaisonError as e:
            log.info("rpc_refused", method=fn.__name__, status=e.grpc_status, error=str(e)[:300])
            await context.abort(status_of(e), str(e))
            raise  # unreachable: abort raises

    return wrapper


def grpc_stream_errors(
    fn: Callable[[Any, Any, grpc.aio.ServicerContext[Any, Any]], AsyncIterator[T]],
) -> Callable[[Any, Any, grpc.aio.ServicerContext[Any, Any]], AsyncIterator[T]]:
    @functools.wraps(fn)
    async def wrapper(
        self: Any, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[T]:
        try:
            _authorize(self, context, fn.__name__)
            with _client_slot(self, context):
                async for item in fn(self, request, context):
                    yield item
        except LiaisonError as e:
            await context.abort(status_of(e), str(e))

    return wrapper


def _credentials(tls: tuple[Path, Path, Path] | None) -> grpc.ServerCredentials | None:
    if tls is None:
        return None
    ca, cert, key = tls
    with map_exceptions({OSError: ConfigError}, f"cannot read gRPC TLS files ({ca}, {cert}, {key})"):
        pems = ca.read_bytes(), cert.read_bytes(), key.read_bytes()
    return grpc.ssl_server_credentials(
        [(pems[2], pems[1])], root_certificates=pems[0], require_client_auth=True
    )


def new_server(
    listen: str, service_names: Sequence[str], tls: tuple[Path, Path, Path] | None = None
) -> tuple[grpc.aio.Server, health.HealthServicer, int]:
    """A grpc.aio server with limits, health and reflection; returns (server, health, port)."""
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", MAX_GRPC_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_GRPC_MESSAGE_BYTES),
        ],
        maximum_concurrent_rpcs=MAX_CONCURRENT_RPCS,
    )
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((*service_names, HEALTH_SERVICE, REFLECTION_SERVICE), server)
    creds = _credentials(tls)
    port = server.add_secure_port(listen, creds) if creds else server.add_insecure_port(listen)
    for name in (*service_names, ""):
        health_servicer.set(name, NOT_SERVING)
    return server, health_servicer, port
