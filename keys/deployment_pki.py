"""The TLS certificates a deployment needs, issued from its own CA.

One CA per deployment; a node certificate for nats-server, the gateway and
every office (server and client use); an agency client certificate per
office; an operator certificate; one per authority. Roles travel in the
certificates' ``spiffe://liaison/<kind>/<name>`` URI SAN; NATS maps node
certificates to users by their subject DN.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509

from keys import pki
from keys.deployment import Inventory

__all__ = ["DeploymentPki", "TlsFiles", "create_deployment_pki", "subject_dn"]

NATS_SERVER = "nats-server"
OPERATOR = "operator"
LAB_AGENCY = "lab-agency"


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    cert: Path
    key: Path

    def as_json(self) -> dict[str, str]:
        return {"ca": str(self.ca), "cert": str(self.cert), "key": str(self.key)}


@dataclass(frozen=True)
class DeploymentPki:
    root: Path
    ca_passphrase: bytes = field(default=b"", repr=False)  # what opens the CA key, to issue more

    @property
    def ca(self) -> Path:
        return self.root / pki.CA_CERT

    def files(self, name: str) -> TlsFiles:
        return TlsFiles(self.ca, self.root / f"{name}.crt", self.root / f"{name}.key")

    def agency(self, office: str) -> TlsFiles:
        return self.files(f"{office}-agency")

    def dn(self, name: str) -> str:
        return subject_dn(self.files(name).cert)


def subject_dn(cert: Path) -> str:
    """The RFC 4514 subject string nats-server's ``verify_and_map`` matches users against."""
    return x509.load_pem_x509_certificate(cert.read_bytes()).subject.rfc4514_string()


def create_deployment_pki(
    inv: Inventory, root: Path, ca_passphrase: bytes, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")
) -> DeploymentPki:
    """Issue every certificate of ``inv`` into ``root`` (kept if the CA exists already).

    The CA key is encrypted under ``ca_passphrase``.
    """
    out = DeploymentPki(root, ca_passphrase)
    if out.ca.exists():
        return out
    root.mkdir(parents=True, exist_ok=True)
    pki.create_ca(root, inv.deployment, passphrase=ca_passphrase)
    for node in (NATS_SERVER, inv.gateway.id, *(o.id for o in inv.offices)):
        pki.issue(root, "node", node, hosts, ca_passphrase=ca_passphrase)
    for office in inv.offices:
        pki.issue(root, "client", f"{office.id}-agency", ca_passphrase=ca_passphrase)
    pki.issue(root, "client", LAB_AGENCY, ca_passphrase=ca_passphrase)
    pki.issue(root, "operator", OPERATOR, ca_passphrase=ca_passphrase)
    for authority in inv.authorities:
        pki.issue(root, "authority", authority.id, ca_passphrase=ca_passphrase)
    return out
