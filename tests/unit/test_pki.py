"""Deployment PKI: CA, leaf certificates, SANs, key usage, chain and expiry."""

from __future__ import annotations

import datetime as dt
import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from exchange.core.errors import ConfigError, KeystoreError
from keys import pki

CA_PW = b"test-ca-passphrase"  # the deployment CA key is always encrypted

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


@pytest.fixture
def ca_dir(tmp_path: Path) -> Path:
    pki.create_ca(tmp_path / "pki", "lab", now=NOW, passphrase=CA_PW)
    return tmp_path / "pki"


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_node_certificate(ca_dir: Path) -> None:
    issued = pki.issue(
        ca_dir, "node", "office-a", ("127.0.0.1", "localhost", "node.example"), now=NOW, ca_passphrase=CA_PW
    )
    cert = _cert(issued.cert)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "office-a"
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "lab"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert san.get_values_for_type(x509.DNSName) == ["localhost", "node.example"]
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["spiffe://liaison/node/office-a"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert stat.S_IMODE(issued.key.stat().st_mode) == 0o600
    assert stat.S_IMODE((ca_dir / pki.CA_KEY).stat().st_mode) == 0o600
    pki.check_chain((ca_dir / pki.CA_CERT).read_bytes(), issued.cert.read_bytes(), now=NOW)


@pytest.mark.parametrize("kind", ["client", "operator", "authority"])
def test_client_kinds_carry_role(ca_dir: Path, kind: pki.Kind) -> None:
    issued = pki.issue(ca_dir, kind, "agency-1", now=NOW, ca_passphrase=CA_PW)
    cert = _cert(issued.cert)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [f"spiffe://liaison/{kind}/agency-1"]
    assert san.get_values_for_type(x509.DNSName) == []
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_chain_refuses_other_ca(ca_dir: Path, tmp_path: Path) -> None:
    issued = pki.issue(ca_dir, "client", "c1", now=NOW, ca_passphrase=CA_PW)
    pki.create_ca(tmp_path / "other", "lab", now=NOW, passphrase=CA_PW)
    with pytest.raises(ConfigError, match="not issued"):
        pki.check_chain((tmp_path / "other" / pki.CA_CERT).read_bytes(), issued.cert.read_bytes(), now=NOW)


def test_chain_refuses_expired(ca_dir: Path) -> None:
    issued = pki.issue(ca_dir, "client", "c1", now=NOW, valid_days=10, ca_passphrase=CA_PW)
    ca = (ca_dir / pki.CA_CERT).read_bytes()
    with pytest.raises(ConfigError, match="not valid"):
        pki.check_chain(ca, issued.cert.read_bytes(), now=NOW + dt.timedelta(days=11))


def test_days_to_expiry(ca_dir: Path) -> None:
    issued = pki.issue(ca_dir, "node", "n1", now=NOW, valid_days=30, ca_passphrase=CA_PW)
    pem = issued.cert.read_bytes()
    assert pki.days_to_expiry(pem, NOW) == 29  # backdated by 5 minutes
    assert pki.days_to_expiry(pem, NOW + dt.timedelta(days=31)) < 0


@pytest.mark.parametrize(
    ("kind", "name", "error"),
    [("node", "../evil", ConfigError), ("root", "x", ConfigError), ("node", "ca", ConfigError)],
    ids=["path-traversal", "unknown-kind", "reserved-name"],
)
def test_issue_refuses(ca_dir: Path, kind: str, name: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        pki.issue(ca_dir, kind, name, now=NOW, ca_passphrase=CA_PW)  # type: ignore[arg-type]


def test_ca_not_overwritten(ca_dir: Path) -> None:
    with pytest.raises(KeystoreError):
        pki.create_ca(ca_dir, "lab", passphrase=CA_PW)


def test_encrypted_ca_key(tmp_path: Path) -> None:
    pki.create_ca(tmp_path, "lab", passphrase=b"pw", now=NOW)
    assert b"ENCRYPTED" in (tmp_path / pki.CA_KEY).read_bytes()
    pki.issue(tmp_path, "node", "n1", ca_passphrase=b"pw", now=NOW)
    with pytest.raises(KeystoreError):
        pki.issue(tmp_path, "node", "n2", ca_passphrase=b"no", now=NOW)
