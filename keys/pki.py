"""Deployment PKI: a CA and the TLS certificates of nodes, clients and operators.

What it does: creates a deployment CA (``ca.crt``/``ca.key``) and issues
leaf certificates (``<name>.crt``/``<name>.key``, keys mode 0600) with
CN=<name>, O=<deployment>, subject alternative names (DNS/IP for nodes; a
URI ``spiffe://liaison/<kind>/<name>`` for every leaf so servers can read the
peer's role) and the right extended key usage. Checks a chain and tells how
many days a certificate has left (``days_to_expiry``, computed in
``exchange.core.expiry``).

What it does not: no revocation lists, no intermediate CAs, no ACME. Key
generation and PEM encoding live in ``exchange.core.primitives``. The CA key
is always encrypted at rest (PKCS#8 with the CA passphrase, from a file or
``LIAISON_CA_PASSPHRASE``); issuing refuses a CA key that is not. Leaf keys
are written unencrypted, because nats-server and grpc must load them
unattended; file mode 0600 protects them.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from exchange.core import model, primitives
from exchange.core.errors import ConfigError, KeystoreError, map_exceptions
from exchange.core.expiry import days_to_expiry
from keys.keystore import write_private_file

__all__ = [
    "CA_CERT",
    "CA_KEY",
    "CA_PASSPHRASE_ENV",
    "CA_VALID_DAYS",
    "LEAF_VALID_DAYS",
    "Issued",
    "Kind",
    "check_chain",
    "create_ca",
    "days_to_expiry",
    "issue",
    "spiffe_id",
]

Kind = Literal["node", "client", "operator", "authority"]
_KINDS: Final = ("node", "client", "operator", "authority")
CA_CERT: Final = "ca.crt"
CA_KEY: Final = "ca.key"
CA_PASSPHRASE_ENV: Final = "LIAISON_CA_PASSPHRASE"  # noqa: S105 (a variable name, not a secret)
CA_VALID_DAYS: Final = 3650
LEAF_VALID_DAYS: Final = 397
_BACKDATE: Final = dt.timedelta(minutes=5)  # tolerate small clock differences between hosts


@dataclass(frozen=True)
class Issued:
    cert: Path
    key: Path


def spiffe_id(kind: str, name: str) -> str:
    return f"spiffe://liaison/{kind}/{name}"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _name(value: str) -> str:
    try:
        return model.check_id(value, "certificate name")
    except ValueError as e:
        raise ConfigError(str(e)) from e


def _write(path: Path, data: bytes, private: bool) -> None:
    with map_exceptions({OSError: KeystoreError}, f"cannot write {path}"):
        if private:
            write_private_file(path, data)
        else:
            path.write_bytes(data)


def create_ca(
    directory: Path,
    name: str,
    *,
    passphrase: bytes,
    now: dt.datetime | None = None,
    valid_days: int = CA_VALID_DAYS,
) -> Issued:
    """Create the deployment CA in ``directory``; ``name`` is the deployment (O=).

    The key is written encrypted under ``passphrase``; there is no unencrypted CA key.
    """
    _name(name)
    if not passphrase:
        raise KeystoreError("the CA key is encrypted at rest: give a CA passphrase")
    cert_path, key_path = directory / CA_CERT, directory / CA_KEY
    if cert_path.exists() or key_path.exists():
        raise KeystoreError(f"a CA exists already in {directory}; refusing to overwrite it")
    with map_exceptions({OSError: KeystoreError}, f"cannot create {directory}"):
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    start = (now or _now()) - _BACKDATE
    key = primitives.new_tls_key()
    public = primitives.tls_public_key(key)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, f"{name} liaison CA"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, name),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, primitives.CERT_SIGNATURE_HASH)
    )
    _write(key_path, primitives.tls_key_pem(key, passphrase), private=True)
    _write(cert_path, primitives.cert_pem(cert), private=False)
    return Issued(cert_path, key_path)


def _load_cert(pem: bytes, what: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError as e:
        raise ConfigError(f"{what} is not a PEM certificate") from e


def _read(path: Path) -> bytes:
    with map_exceptions({OSError: ConfigError}, f"cannot read {path}"):
        return path.read_bytes()


def _san(kind: str, name: str, hosts: Sequence[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(spiffe_id(kind, name))]
    if kind == "node":
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def issue(
    directory: Path,
    kind: Kind,
    name: str,
    hosts: Sequence[str] = ("127.0.0.1", "localhost"),
    *,
    ca_passphrase: bytes,
    now: dt.datetime | None = None,
    valid_days: int = LEAF_VALID_DAYS,
) -> Issued:
    """Issue ``<name>.crt``/``<name>.key`` signed by the CA in ``directory``.

    Nodes get serverAuth+clientAuth (they serve gRPC and connect to NATS);
    clients, operators and authorities get clientAuth only.
    """
    if kind not in _KINDS:
        raise ConfigError(f"unknown certificate kind {kind!r} ({', '.join(_KINDS)})")
    _name(name)
    if name == "ca":
        raise ConfigError("certificate name 'ca' is reserved for the CA")
    ca_cert = _load_cert(_read(directory / CA_CERT), str(directory / CA_CERT))
    ca_key_pem = _read(directory / CA_KEY)
    if b"-----BEGIN ENCRYPTED PRIVATE KEY-----" not in ca_key_pem:
        raise KeystoreError(f"{directory / CA_KEY} is not encrypted at rest: refusing to issue with it")
    ca_key = primitives.load_tls_key_pem(ca_key_pem, ca_passphrase)
    org = ca_cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    deployment = str(org[0].value) if org else ""
    key = primitives.new_tls_key()
    public = primitives.tls_public_key(key)
    start = (now or _now()) - _BACKDATE
    end = min(start + dt.timedelta(days=valid_days), ca_cert.not_valid_after_utc)
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    if kind == "node":
        usages.insert(0, ExtendedKeyUsageOID.SERVER_AUTH)
    cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.COMMON_NAME, name),
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, deployment),
                    x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, kind),
                ]
            )
        )
        .issuer_name(ca_cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(_san(kind, name, hosts), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, primitives.CERT_SIGNATURE_HASH)
    )
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    _write(key_path, primitives.tls_key_pem(key, None), private=True)
    _write(cert_path, primitives.cert_pem(cert), private=False)
    return Issued(cert_path, key_path)


def check_chain(ca_pem: bytes, cert_pem: bytes, now: dt.datetime | None = None) -> None:
    """Return None when ``cert_pem`` was issued by ``ca_pem`` and both are valid at ``now``."""
    ca = _load_cert(ca_pem, "CA certificate")
    cert = _load_cert(cert_pem, "certificate")
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature) as e:
        raise ConfigError(f"certificate {cert.subject.rfc4514_string()} was not issued by this CA") from e
    at = now or _now()
    for c, what in ((ca, "CA certificate"), (cert, "certificate")):
        if not c.not_valid_before_utc <= at <= c.not_valid_after_utc:
            raise ConfigError(f"{what} {c.subject.rfc4514_string()} is not valid at {at.isoformat()}")
