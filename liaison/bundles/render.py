"""Render one installable bundle per node from a deployment inventory (`liaison deploy render`).

What it does: creates the deployment CA and every TLS certificate (hosts from
the inventory), and writes ``<out>/<node>/`` for each hub server, the
gateway, the witness and every office: node config (the TOML the node
loads), nats-server config for the site, certificates, systemd units from
``deploy/systemd/`` templates, ``bundle.json`` (what ``liaison deploy check``
reads) and ``README.txt`` (install steps). ``<out>/_private/`` keeps the CA
key, the operator certificate and (bundled mode) every keystore and the
passphrase of each owner: it is never shipped to a node.

Private identity keys, two modes:

- ``on-node`` (default): no identity key leaves the
  node that uses it. Each bundle tells the operator to run ``liaison keys
  init`` on the node and send the public part to the authorities, who build
  and sign the directory (``_private/CEREMONY.txt`` lists the commands).
- ``bundled``: keystores are created here with the signed directory v1, each
  encrypted under its owner's own passphrase, generated here and written
  0600 to ``_private/<owner>.passphrase``; each node's bundle carries only its
  own (``passphrase``). No passphrase opens two owners' keystores, so the
  authorities' m-of-n threshold still holds against one holder. For first
  installs where one trusted operator sets up every site.

TLS keys are always issued here (``keys.pki`` has no CSR signing yet); each
bundle carries only its own, mode 0600.

What it does not: copy files to hosts, start anything, or check a bundle
(``liaison.bundles.check`` does).
"""

from __future__ import annotations

import hmac
import json
import secrets
import shutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from exchange.core.errors import ConfigError
from exchange.core.merkle import EMPTY_ROOT
from exchange.core.wire import OFFICE_JS_DOMAIN, inbox_prefix
from gateway.witness.checks import Pin
from keys import pki
from keys.deployment import create_owned_deployment, key_owners
from keys.deployment_pki import OPERATOR, subject_dn
from keys.inventory import OfficeSite, SiteInventory
from keys.keystore import write_private_file
from liaison.bundles import docs as deploy_docs
from liaison.bundles.nats import TlsPaths, hub_config, leaf_config

__all__ = [
    "BUNDLE_FORMAT",
    "DEFAULT_TEMPLATES",
    "KEYS_BUNDLED",
    "KEYS_ON_NODE",
    "Bundle",
    "issue_nats_certificates",
    "render",
]

BUNDLE_FORMAT: Final = "liaison-bundle-v1"
DEFAULT_TEMPLATES: Final = Path(__file__).resolve().parents[2] / "deploy" / "systemd"
KEYS_BUNDLED: Final = "bundled"
KEYS_ON_NODE: Final = "on-node"
PRIVATE: Final = "_private"
CA_FILE: Final = "tls/ca.crt"
PASSPHRASE_FILE: Final = "passphrase"  # noqa: S105 - a file name: the node's own keystore passphrase
PASSPHRASE_BYTES: Final = 32  # entropy of each generated keystore passphrase (token_urlsafe)


@dataclass
class Bundle:
    """What a bundle holds; written as ``bundle.json`` and read back by the checker."""

    node: str
    role: str  # hub | gateway | witness | office
    deployment: str
    host: str
    install_dir: str
    state_dir: str
    config: str | None = None
    nats_config: str | None = None
    ca: str = CA_FILE
    certificates: list[dict[str, str]] = field(default_factory=list)  # name, cert, key
    keys: dict[str, str] = field(default_factory=dict)  # mode, dir, owner
    directory: str | None = None
    directory_holder: str = ""
    listen: list[dict[str, str]] = field(default_factory=list)  # what, address
    units: list[dict[str, str]] = field(default_factory=list)  # file, instance
    format: str = BUNDLE_FORMAT

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Bundle:
        if doc.get("format") != BUNDLE_FORMAT:
            raise ConfigError(f"not a {BUNDLE_FORMAT} manifest")
        try:
            return cls(**doc)
        except TypeError as e:
            raise ConfigError(f"malformed bundle manifest: {e}") from None


def _q(value: str | Path) -> str:
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def issue_nats_certificates(
    ca_dir: Path, site: SiteInventory, hosts: Callable[[str], tuple[str, ...]], ca_passphrase: bytes
) -> None:
    """The nats-server certificates of ``site`` into ``ca_dir`` (the lab's cluster topology uses it too).

    One per hub server (``<name>.crt``), its route certificate (``<name>.route.crt``) and one
    per office leaf node server (``<office>-nats.crt``); ``hosts`` gives a host's SAN names.
    """
    for s in site.hub.servers:
        pki.issue(ca_dir, "node", s.name, hosts(s.host), ca_passphrase=ca_passphrase)
        # Every route certificate has the same name (the cluster admits only that one
        # identity) but its own key and host; keep each under a distinct file name.
        route = pki.issue(
            ca_dir, "node", f"{site.hub.cluster}-route", hosts(s.host), ca_passphrase=ca_passphrase
        )
        route.cert.rename(ca_dir / f"{s.name}.route.crt")
        route.key.rename(ca_dir / f"{s.name}.route.key")
    for o in site.offices:
        pki.issue(ca_dir, "node", o.nats_name, hosts(o.host), ca_passphrase=ca_passphrase)


class _Renderer:
    def __init__(self, site: SiteInventory, out: Path, keys: str, templates: Path) -> None:
        self.site, self.out, self.keys_mode, self.templates = site, out, keys, templates
        self.private = out / PRIVATE
        self.pki = self.private / "pki"
        self.deployment_root = self.private / "deployment"
        self.install = site.install

    # --- certificates ------------------------------------------------------------------------

    def _hosts(self, host: str) -> tuple[str, ...]:
        # Loopback names too: operators run `liaison status` and health probes on the host itself.
        return tuple(dict.fromkeys((host, "localhost", "127.0.0.1")))

    def create_pki(self, ca_passphrase: bytes) -> None:
        site, pw = self.site, ca_passphrase
        pki.create_ca(self.pki, site.deployment, passphrase=pw)
        issue_nats_certificates(self.pki, site, self._hosts, pw)
        pki.issue(self.pki, "node", site.gateway.id, self._hosts(site.gateway.host), ca_passphrase=pw)
        for o in site.offices:
            pki.issue(self.pki, "node", o.id, self._hosts(o.host), ca_passphrase=pw)
            for client in o.agency_clients.values():
                pki.issue(self.pki, "client", client, ca_passphrase=pw)
        if site.witness is not None:
            pki.issue(self.pki, "authority", site.witness.authority, ca_passphrase=pw)
        pki.issue(self.pki, "operator", OPERATOR, ca_passphrase=pw)

    def passphrase_path(self, owner: str) -> Path:
        return self.private / f"{owner}.passphrase"

    def create_keystores(self, ca_passphrase: bytes, now_ms: int) -> None:
        """Every keystore under its owner's own new passphrase, each written to ``_private/``."""
        owners = key_owners(self.site.inventory)
        passphrases = {o: secrets.token_urlsafe(PASSPHRASE_BYTES).encode() for o in owners}
        if any(hmac.compare_digest(pw, ca_passphrase) for pw in passphrases.values()):
            raise ConfigError("a keystore passphrase equals the CA passphrase; render again")
        create_owned_deployment(self.site.inventory, self.deployment_root, passphrases, now_ms)
        for owner, pw in passphrases.items():
            write_private_file(self.passphrase_path(owner), pw + b"\n")

    def dn(self, name: str) -> str:
        return subject_dn(self.pki / f"{name}.crt")

    # --- files -------------------------------------------------------------------------------

    def _copy(self, src: Path, dst: Path, *, private: bool) -> None:
        dst.parent.mkdir(parents=True, exist_ok=True)
        if private:
            write_private_file(dst, src.read_bytes())
        else:
            dst.write_bytes(src.read_bytes())

    def _cert(self, b: Bundle, bundle_dir: Path, name: str, source: str, target: str) -> None:
        self._copy(self.pki / f"{source}.crt", bundle_dir / f"{target}.crt", private=False)
        self._copy(self.pki / f"{source}.key", bundle_dir / f"{target}.key", private=True)
        b.certificates.append({"name": name, "cert": f"{target}.crt", "key": f"{target}.key"})

    def _keys(self, b: Bundle, bundle_dir: Path, owner: str, holder: str) -> None:
        b.keys = {"mode": self.keys_mode, "dir": "keys", "owner": owner}
        b.directory, b.directory_holder = "directory.pb", holder
        if self.keys_mode == KEYS_BUNDLED:
            src = self.deployment_root / "keys" / owner
            (bundle_dir / "keys").mkdir(mode=0o700)
            for f in sorted(src.iterdir()):
                self._copy(f, bundle_dir / "keys" / f.name, private=True)
            # Only this keystore's own passphrase travels with it: it opens nothing else.
            self._copy(self.passphrase_path(owner), bundle_dir / PASSPHRASE_FILE, private=True)
            b.keys["passphrase"] = PASSPHRASE_FILE
            self._copy(self.deployment_root / "directory.pb", bundle_dir / "directory.pb", private=False)

    def _units(self, b: Bundle, bundle_dir: Path, units: Iterable[tuple[str, str]]) -> None:
        subs = {
            "@LIAISON@": str(self.install.liaison),
            "@NATS_SERVER@": str(self.install.nats_server),
            "@CONFIG_DIR@": str(self.install.config_dir),
            "@STATE_DIR@": str(self.install.state_dir),
            "@CREDENTIALS_DIR@": str(self.install.credentials_dir),
            "@USER@": self.install.user,
            "@NODE@": b.node,
        }
        for template, instance in units:
            try:
                text = (self.templates / template).read_text()
            except OSError as e:
                raise ConfigError(f"systemd template {self.templates / template}: {e.strerror}") from e
            for key, value in subs.items():
                text = text.replace(key, value)
            (bundle_dir / "systemd").mkdir(exist_ok=True)
            (bundle_dir / "systemd" / template).write_text(text)
            b.units.append({"file": f"systemd/{template}", "instance": instance})

    def _passphrase_file(self, unit: str, node: str) -> str:
        return self.install.passphrase_file.format(unit=unit, node=node)

    def _new(self, node: str, role: str, host: str) -> tuple[Bundle, Path]:
        bundle_dir = self.out / node
        bundle_dir.mkdir()
        (bundle_dir / "tls").mkdir()
        self._copy(self.pki / pki.CA_CERT, bundle_dir / CA_FILE, private=False)
        b = Bundle(
            node=node,
            role=role,
            deployment=self.site.deployment,
            host=host,
            install_dir=str(self.install.config_dir / node),
            state_dir=str(self.install.state_dir / node),
        )
        return b, bundle_dir

    def _finish(self, b: Bundle, bundle_dir: Path) -> Bundle:
        (bundle_dir / "bundle.json").write_text(json.dumps(b.to_json(), indent=2) + "\n")
        (bundle_dir / "README.txt").write_text(deploy_docs.readme(self.site, b))
        return b

    # --- bundles -----------------------------------------------------------------------------

    def hub(self) -> list[Bundle]:
        site, bundles = self.site, []
        for s in site.hub.servers:
            b, d = self._new(s.name, "hub", s.host)
            self._cert(b, d, "server", s.name, "tls/server")
            self._cert(b, d, "route", f"{s.name}.route", "tls/route")
            inst = Path(b.install_dir)
            text = hub_config(
                site,
                s,
                client_tls=TlsPaths(inst / CA_FILE, inst / "tls/server.crt", inst / "tls/server.key"),
                route_tls=TlsPaths(inst / CA_FILE, inst / "tls/route.crt", inst / "tls/route.key"),
                store=Path(b.state_dir) / "nats",
                gateway_dn=self.dn(site.gateway.id),
                leaf_dns={o.id: self.dn(o.nats_name) for o in site.offices},
            )
            (d / "nats-server.conf").write_text(text)
            b.nats_config = "nats-server.conf"
            b.listen = [
                {"what": "NATS client", "address": f"{s.bind}:{s.client_port}"},
                {"what": "NATS cluster", "address": f"{s.bind}:{s.cluster_port}"},
                {"what": "NATS leafnode", "address": f"{s.bind}:{s.leaf_port}"},
                {"what": "NATS monitoring", "address": f"127.0.0.1:{s.monitor_port}"},
            ]
            self._units(b, d, [("nats-server@.service", s.name)])
            bundles.append(self._finish(b, d))
        return bundles

    def gateway(self) -> Bundle:
        site, g = self.site, self.site.gateway
        b, d = self._new(g.id, "gateway", g.host)
        self._cert(b, d, "node", g.id, "tls/node")
        self._keys(b, d, g.id, g.id)
        seeds = ",".join(f"tls://{h.host}:{h.client_port}" for h in site.hub.servers)
        replicas = 3 if len(site.hub.servers) >= 3 else 1
        (d / "gateway.toml").write_text(
            f"# Gateway {g.id} of {site.deployment} (rendered by liaison deploy)\n"
            f"[gateway]\nid = {_q(g.id)}\n\n"
            f"[audit]\nstore = {_q(Path(b.state_dir) / 'audit.db')}\ntree_head_interval_s = 2.0\n\n"
            f'[keys]\ndir = "keys"\n'
            f"passphrase_file = {_q(self._passphrase_file('liaison-gateway.service', g.id))}\n\n"
            '[directory]\nfile = "directory.pb"\n\n'
            "# Every hub server as a seed; streams replicated on three of them (R3).\n"
            f"[nats]\nurl = {_q(seeds)}\nreplicas = {replicas}\n"
            'ca = "tls/ca.crt"\ncert = "tls/node.crt"\nkey = "tls/node.key"\n\n'
            f"[grpc]\nlisten = {_q(f'{g.bind}:{g.grpc_port}')}\n\n"
            '[tls]\nca = "tls/ca.crt"\ncert = "tls/node.crt"\nkey = "tls/node.key"\n'
        )
        b.config = "gateway.toml"
        b.listen = [{"what": "gateway gRPC", "address": f"{g.bind}:{g.grpc_port}"}]
        self._units(b, d, [("liaison-gateway.service", "")])
        return self._finish(b, d)

    def witness(self) -> Bundle | None:
        site, w = self.site, self.site.witness
        if w is None:
            return None
        b, d = self._new(w.name, "witness", w.host)
        self._cert(b, d, "authority", w.authority, "tls/authority")
        self._keys(b, d, w.authority, w.authority)
        (d / "witness.toml").write_text(
            f"# Witness {w.authority} of {site.deployment} (rendered by liaison deploy)\n"
            f"[witness]\nid = {_q(w.authority)}\nstate = {_q(Path(b.state_dir) / 'witness.json')}\n"
            f"interval_s = {w.interval_s}\n"
            "# The first head co-signed must extend this pin: the empty log of a new deployment.\n"
            "# A witness added later: a head confirmed with the other embassy (liaison audit head).\n"
            f"pin = {_q(str(Pin(0, EMPTY_ROOT)))}\n\n"
            f'[keys]\ndir = "keys"\n'
            f"passphrase_file = {_q(self._passphrase_file('liaison-witness.service', w.name))}\n\n"
            f"[gateway]\nendpoint = {_q(f'{site.gateway.host}:{site.gateway.grpc_port}')}\n\n"
            '[directory]\nfile = "directory.pb"\n\n'
            '[tls]\nca = "tls/ca.crt"\ncert = "tls/authority.crt"\nkey = "tls/authority.key"\n'
        )
        b.config = "witness.toml"
        self._units(b, d, [("liaison-witness.service", "")])
        return self._finish(b, d)

    def office(self, o: OfficeSite) -> Bundle:
        site = self.site
        b, d = self._new(o.id, "office", o.host)
        self._cert(b, d, "node", o.id, "tls/node")
        self._cert(b, d, "leaf node server", o.nats_name, "tls/nats")
        for system, client in o.agency_clients.items():
            # One certificate per agency system; the single default keeps its old file name.
            target = "agency/client" if not o.agency_systems else f"agency/{system}"
            self._cert(b, d, f"agency client ({system})", client, target)
        self._copy(self.pki / pki.CA_CERT, d / "agency" / "ca.crt", private=False)
        self._keys(b, d, o.id, o.id)
        unit = f"liaison-office@{o.id}.service"
        (d / "office.toml").write_text(
            f"# Office {o.id} of {site.deployment} (rendered by liaison deploy)\n"
            f"[office]\nid = {_q(o.id)}\nstore = {_q(Path(b.state_dir) / 'office.db')}\n"
            f"suite = {_q(o.suite)}\n\n"
            f'[keys]\ndir = "keys"\npassphrase_file = {_q(self._passphrase_file(unit, o.id))}\n\n'
            '[directory]\nfile = "directory.pb"\n\n'
            "# The office's own leaf node server; the hub's JetStream is reached in its domain.\n"
            f"[nats]\nurl = {_q(f'tls://{o.nats_url_host}:{o.nats_port}')}\n"
            'ca = "tls/ca.crt"\ncert = "tls/node.crt"\nkey = "tls/node.key"\n'
            f"inbox_prefix = {_q(inbox_prefix(o.id))}\ndomain = {_q(OFFICE_JS_DOMAIN)}\n\n"
            f"[grpc]\nlisten = {_q(f'{o.bind}:{o.grpc_port}')}\n\n"
            '[tls]\nca = "tls/ca.crt"\ncert = "tls/node.crt"\nkey = "tls/node.key"\n'
            f"clients = [{', '.join(_q(c) for c in o.agency_clients.values())}]\n"
        )
        b.config = "office.toml"
        inst = Path(b.install_dir)
        (d / "nats-server.conf").write_text(
            leaf_config(
                site,
                o,
                tls=TlsPaths(inst / CA_FILE, inst / "tls/nats.crt", inst / "tls/nats.key"),
                store=Path(b.state_dir) / "nats",
                office_dn=self.dn(o.id),
            )
        )
        b.nats_config = "nats-server.conf"
        b.listen = [
            {"what": "office gRPC", "address": f"{o.bind}:{o.grpc_port}"},
            {"what": "leaf node NATS client (office node only)", "address": f"{o.nats_bind}:{o.nats_port}"},
        ]
        self._units(b, d, [("nats-server@.service", o.id), ("liaison-office@.service", o.id)])
        return self._finish(b, d)

    def private_files(self) -> None:
        op = self.private / "operator"
        for name in (pki.CA_CERT, f"{OPERATOR}.crt", f"{OPERATOR}.key"):
            self._copy(self.pki / name, op / name, private=name.endswith(".key"))
        # Each TLS key now lives in the one bundle that uses it; keep no second copy here.
        for key in self.pki.glob("*.key"):
            if key.name not in (pki.CA_KEY, f"{OPERATOR}.key"):
                key.unlink()
        (self.private / "README.txt").write_text(deploy_docs.private_readme(self.site, self.keys_mode))
        if self.keys_mode == KEYS_ON_NODE:
            (self.private / "CEREMONY.txt").write_text(deploy_docs.ceremony(self.site))


def render(
    site: SiteInventory,
    out: Path,
    *,
    keys: str,
    ca_passphrase: bytes,
    now_ms: int,
    templates: Path = DEFAULT_TEMPLATES,
) -> list[Bundle]:
    """Write every bundle under ``out`` (which must not exist or be empty); return their manifests.

    ``ca_passphrase`` encrypts the deployment CA key. In bundled mode each keystore owner gets
    its own generated passphrase (``_private/<owner>.passphrase``); none is the CA's.
    """
    if keys not in (KEYS_BUNDLED, KEYS_ON_NODE):
        raise ConfigError(f"keys mode must be {KEYS_BUNDLED} or {KEYS_ON_NODE}, not {keys!r}")
    if not ca_passphrase:
        raise ConfigError(
            "the CA key is encrypted at rest: give --ca-passphrase-file or LIAISON_CA_PASSPHRASE"
        )
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out} is not empty; render into a new folder")
    out.mkdir(parents=True, exist_ok=True)
    r = _Renderer(site, out.resolve(), keys, templates)
    try:
        r.create_pki(ca_passphrase)
        if keys == KEYS_BUNDLED:
            r.create_keystores(ca_passphrase, now_ms)
        bundles = [*r.hub(), r.gateway()]
        witness = r.witness()
        if witness is not None:
            bundles.append(witness)
        bundles += [r.office(o) for o in site.offices]
        r.private_files()
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)  # no half-rendered deployment with keys in it
        raise
    return bundles
