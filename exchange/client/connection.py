"""Where a node listens and which TLS files a client presents to it: the one reader of both.

What it does: ``ClientTls`` names the CA, certificate and key of mutual TLS
and reads them (``read``/``credentials``); every failure (a missing file,
bytes that are not PEM) is a one-line ``ConfigError`` naming the file.
``explicit_tls`` checks the ``--ca/--cert/--key`` options of the CLI.
``lab_endpoint`` (an office, as its agency), ``lab_gateway`` (the gateway,
as its operator) and ``lab_node`` (any node, as the operator) read a
running lab's ``lab.json`` (``LAB_JSON``, written by ``liaison.lab.lab``).
``channel`` and ``aio_channel`` open a gRPC channel with that material.
The SDK, the gateway client, the lab and the CLI all come here.

What it does not: no server plumbing (no NATS, SQLite, aiohttp or
PostgreSQL), no certificate chain or expiry checks (the TLS handshake does
those), no key decryption (gRPC needs a clear client key).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import grpc
from cryptography import x509

from exchange.core.errors import ConfigError, map_exceptions

__all__ = [
    "LAB_JSON",
    "ClientTls",
    "aio_channel",
    "channel",
    "explicit_tls",
    "lab_endpoint",
    "lab_gateway",
    "lab_node",
    "read_lab",
]

LAB_JSON: Final = "lab.json"
_KEY_MARKERS: Final = (b"-----BEGIN ", b"PRIVATE KEY-----")


@dataclass(frozen=True)
class ClientTls:
    ca: Path
    cert: Path
    key: Path
    server_name: str = ""

    def read(self) -> tuple[bytes, bytes, bytes]:
        """(CA, certificate, key) PEM bytes, each checked to be PEM of the right kind."""
        ca, cert, key = (_read(p) for p in (self.ca, self.cert, self.key))
        # cryptography's ValueError text is a long FAQ pointer; the file's name says more.
        try:
            x509.load_pem_x509_certificates(ca)
        except ValueError as e:
            raise ConfigError(f"{self.ca} is not a PEM CA certificate") from e
        try:
            x509.load_pem_x509_certificate(cert)
        except ValueError as e:
            raise ConfigError(f"{self.cert} is not a PEM certificate") from e
        # Parsing the key would need cryptography.hazmat (exchange.core.primitives only) and
        # would refuse key types gRPC accepts; the markers catch a wrong or empty file.
        if not all(m in key for m in _KEY_MARKERS):
            raise ConfigError(f"{self.key} is not a PEM private key")
        return ca, cert, key

    def credentials(self) -> grpc.ChannelCredentials:
        ca, cert, key = self.read()
        return grpc.ssl_channel_credentials(ca, key, cert)


def _read(path: Path) -> bytes:
    with map_exceptions({OSError: ConfigError}, f"cannot read TLS file {path}"):
        return path.read_bytes()


def explicit_tls(ca: str | None, cert: str | None, key: str | None) -> ClientTls | None:
    """``--ca/--cert/--key``: all three (mutual TLS), or none (plain gRPC)."""
    if not (ca or cert or key):
        return None
    if not (ca and cert and key):
        raise ConfigError("mutual TLS needs all of --ca, --cert and --key")
    return ClientTls(Path(ca), Path(cert), Path(key))


def _options(tls: ClientTls | None, options: Sequence[tuple[str, Any]]) -> list[tuple[str, Any]]:
    if tls is not None and tls.server_name:
        return [*options, ("grpc.ssl_target_name_override", tls.server_name)]
    return list(options)


def channel(target: str, tls: ClientTls | None, options: Sequence[tuple[str, Any]] = ()) -> grpc.Channel:
    """A synchronous channel: plain gRPC without ``tls``, mutual TLS with it."""
    if tls is None:
        return grpc.insecure_channel(target, options=list(options))
    return grpc.secure_channel(target, tls.credentials(), options=_options(tls, options))


def aio_channel(
    target: str, tls: ClientTls | None, options: Sequence[tuple[str, Any]] = ()
) -> grpc.aio.Channel:
    """The same for grpc.aio."""
    if tls is None:
        return grpc.aio.insecure_channel(target, options=list(options))
    return grpc.aio.secure_channel(target, tls.credentials(), options=_options(tls, options))


# --- a running lab's lab.json ---------------------------------------------------------


def read_lab(lab_dir: Path | str) -> tuple[Path, dict[str, Any]]:
    """The path and content of ``lab_dir``'s lab.json (ConfigError when there is none)."""
    path = Path(lab_dir) / LAB_JSON
    unreadable = {OSError: ConfigError, ValueError: ConfigError}  # ValueError: not JSON, not UTF-8
    with map_exceptions(unreadable, f"cannot read {path} (is the lab running?)"):
        lab = json.loads(path.read_text())
    if not isinstance(lab, dict):
        raise ConfigError(f"{path} is not a lab description (is the lab running?)")
    return path, lab


def _tls(path: Path, entry: Any) -> ClientTls | None:
    if not entry:
        return None
    with map_exceptions({KeyError: ConfigError, TypeError: ConfigError}, f"{path}: a TLS entry lacks a file"):
        return ClientTls(Path(entry["ca"]), Path(entry["cert"]), Path(entry["key"]))


def lab_endpoint(lab_dir: Path | str, office: str) -> tuple[str, ClientTls | None]:
    """The gRPC address of ``office`` and the agency TLS files to use with it."""
    path, lab = read_lab(lab_dir)
    offices = [o for o in lab.get("offices", []) if isinstance(o, dict)]
    entry = next((o for o in offices if o.get("id") == office), None)
    if entry is None or "grpc" not in entry:
        names = ", ".join(str(o.get("id", "?")) for o in offices)
        raise ConfigError(f"no office {office!r} in {path} (offices: {names})")
    # The office's own agency certificate when the lab lists one, else the lab-wide one.
    return str(entry["grpc"]), _tls(path, entry.get("client_tls") or lab.get("client_tls"))


def lab_gateway(lab_dir: Path | str) -> tuple[str, ClientTls | None]:
    """The gateway's gRPC address and the operator TLS files."""
    path, lab = read_lab(lab_dir)
    gateway = lab.get("gateway")
    if not isinstance(gateway, dict) or "grpc" not in gateway:
        raise ConfigError(f"{path} has no gateway.grpc (is the lab running?)")
    return str(gateway["grpc"]), _tls(path, lab.get("operator_tls"))


def lab_node(lab_dir: Path | str, name: str) -> tuple[str, ClientTls | None, str | None]:
    """(gRPC address, operator TLS files, metrics URL) of node ``name`` ("gateway" or an id)."""
    path, lab = read_lab(lab_dir)
    gateway = lab.get("gateway")
    offices = [o for o in lab.get("offices", []) if isinstance(o, dict)]
    nodes = [gateway if isinstance(gateway, dict) else {}, *offices]
    entry = next(
        (n for i, n in enumerate(nodes) if n.get("id") == name or (name == "gateway" and i == 0)),
        None,
    )
    if entry is None or "grpc" not in entry:
        known = ", ".join(str(n.get("id", "?")) for n in nodes)
        raise ConfigError(f"no node {name!r} in {path} (nodes: {known})")
    metrics = entry.get("metrics")
    return str(entry["grpc"]), _tls(path, lab.get("operator_tls")), str(metrics) if metrics else None
