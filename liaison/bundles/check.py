"""Validate a rendered bundle on the host it is meant for (`liaison deploy check`).

What it does: reads ``bundle.json`` and checks, one result per check: the
node config parses with the node's own loader; every certificate chains to
the bundle's CA, is valid now and matches its key; the keystore opens with
the passphrase given, else with the bundle's own ``passphrase`` file (a
bundled render gives each keystore its own; skipped, with a note, when keys
are created on the node and are not there yet); the pinned directory verifies and lists the node; every
listening port is free on this machine; ``nats-server -t`` accepts the
nats-server config; the systemd units are well-formed (``systemd-analyze
verify`` when present, else a parse check) and carry the hardening options.

What it does not: fix anything, contact other hosts, or print a key or a
passphrase (errors name files and checks only).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography import x509

from exchange.core import primitives
from exchange.core.errors import ConfigError, LiaisonError
from exchange.nats.version import MAX_VERSION_TEXT, check_nats_server_version
from exchange.office.config import load_office_config
from exchange.runtime.lifecycle import load_directory
from gateway.config import load_gateway_config
from gateway.witness.runner import load_witness_config
from keys import pki
from keys.keystore import open_keystore, passphrase_from
from liaison.bundles.render import KEYS_ON_NODE, Bundle
from liaison.natsserver import find_nats_server_binary

__all__ = ["HARDENING", "Result", "check_bundle", "find_bundles"]

NATS_CHECK_TIMEOUT_S: Final = 30.0
SYSTEMD_CHECK_TIMEOUT_S: Final = 30.0
# Options every rendered unit must carry (name -> required value, None: any value).
HARDENING: Final[dict[str, str | None]] = {
    "User": None,
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "CapabilityBoundingSet": "",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "ReadWritePaths": None,
    "Restart": "on-failure",
}


def _nats_server_version(binary: Path) -> str:
    """The output of ``nats-server --version`` (``nats-server: v2.15.1``), bounded in time."""
    try:
        proc = subprocess.run(
            [str(binary), "--version"],
            capture_output=True,
            text=True,
            timeout=NATS_CHECK_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ConfigError(f"cannot run {binary} --version: {e}") from e
    if proc.returncode != 0:
        raise ConfigError(f"{binary} --version exited {proc.returncode}")
    return proc.stdout.strip()[:MAX_VERSION_TEXT]


@dataclass(frozen=True)
class Result:
    check: str
    status: str  # ok | FAIL | skip
    detail: str

    @property
    def failed(self) -> bool:
        return self.status == "FAIL"

    def line(self) -> str:
        return f"  {self.status:<4}  {self.check:<12} {self.detail}"


def find_bundles(path: Path) -> list[Path]:
    """``path`` itself when it is a bundle, else the bundles directly under it."""
    if (path / "bundle.json").is_file():
        return [path]
    try:
        found = sorted(p for p in path.iterdir() if (p / "bundle.json").is_file())
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from e
    if not found:
        raise ConfigError(f"{path} holds no bundle (no bundle.json)")
    return found


class _Checker:
    def __init__(self, root: Path, b: Bundle, passphrase: bytes | None) -> None:
        self.root, self.b, self.passphrase = root, b, passphrase
        self.results: list[Result] = []

    def ok(self, check: str, detail: str) -> None:
        self.results.append(Result(check, "ok", detail))

    def fail(self, check: str, detail: str) -> None:
        self.results.append(Result(check, "FAIL", detail))

    def skip(self, check: str, detail: str) -> None:
        self.results.append(Result(check, "skip", detail))

    def guard(self, check: str, fn: Callable[[], str]) -> None:
        try:
            self.ok(check, fn())
        except LiaisonError as e:
            self.fail(check, str(e))

    # --- the checks ------------------------------------------------------------------------

    def config(self) -> None:
        b = self.b
        if b.config is None:
            self.skip("config", f"no node config ({b.role}: nats-server only)")
            return
        path = self.root / b.config

        def parse() -> str:
            if b.role == "office":
                owner = load_office_config(path).office
            elif b.role == "gateway":
                owner = load_gateway_config(path).gateway
            else:
                owner = load_witness_config(path).witness
            if owner != b.keys.get("owner"):
                raise ConfigError(f"{b.config} is for {owner}, the bundle for {b.keys.get('owner')}")
            return f"{b.config} parses ({b.role} {owner})"

        self.guard("config", parse)

    def certificates(self) -> None:
        try:
            ca = (self.root / self.b.ca).read_bytes()
        except OSError as e:
            self.fail("certificate", f"CA certificate {self.b.ca}: {e.strerror}")
            return
        now = dt.datetime.now(dt.UTC)
        for item in self.b.certificates:
            self.guard("certificate", functools.partial(self._one_cert, ca, item, now))

    def _one_cert(self, ca: bytes, item: dict[str, str], now: dt.datetime) -> str:
        cert_path, key_path = self.root / item["cert"], self.root / item["key"]
        try:
            cert_pem, key_pem = cert_path.read_bytes(), key_path.read_bytes()
        except OSError as e:
            raise ConfigError(f"{item['name']}: cannot read {e.filename}: {e.strerror}") from e
        pki.check_chain(ca, cert_pem, now)
        cert = x509.load_pem_x509_certificate(cert_pem)
        key = primitives.load_tls_key_pem(key_pem, None)
        if primitives.tls_public_key(key) != cert.public_key():
            raise ConfigError(f"{item['name']}: {item['key']} is not the key of {item['cert']}")
        days = pki.days_to_expiry(cert_pem, now)
        return f"{item['name']} {item['cert']} chains to the CA, matches its key, {days} days left"

    def keys(self) -> None:
        b = self.b
        if not b.keys:
            self.skip("keys", "no identity keys (a hub server holds only TLS certificates)")
            return
        keys_dir = self.root / b.keys["dir"]
        if b.keys["mode"] == KEYS_ON_NODE and not (keys_dir / "keystore.json").exists():
            self.skip("keys", "no keystore by design: keys are created on the node (README step 4)")
            return
        own = b.keys.get("passphrase")
        if self.passphrase is None and not (own and (self.root / own).is_file()):
            self.fail("keys", "no passphrase: give --passphrase-file or set LIAISON_PASSPHRASE")
            return

        def open_() -> str:
            if self.passphrase is not None:
                passphrase = self.passphrase
            else:
                assert own is not None
                path = self.root / own
                if path.stat().st_mode & 0o077:
                    raise ConfigError(f"{own} (the keystore passphrase) must be mode 0600")
                passphrase = passphrase_from(path)
            ident = open_keystore(keys_dir, passphrase)
            if ident.owner_id != b.keys["owner"]:
                raise ConfigError(
                    f"keystore {b.keys['dir']} belongs to {ident.owner_id}, not {b.keys['owner']}"
                )
            return f"keystore of {ident.owner_id} opens with the passphrase ({len(ident.keys)} keys)"

        self.guard("keys", open_)

    def directory(self) -> None:
        b = self.b
        if b.directory is None:
            self.skip("directory", f"no directory ({b.role})")
            return
        path = self.root / b.directory
        if not path.exists() and b.keys.get("mode") == KEYS_ON_NODE:
            self.skip("directory", "not yet here: the authorities send it after the key ceremony")
            return

        def verify() -> str:
            d = load_directory(path).directory
            holder = b.directory_holder
            if d.office(holder) is None and d.gateway(holder) is None and d.authority(holder) is None:
                raise ConfigError(f"directory v{d.version} does not list {holder}")
            return f"{b.directory} v{d.version} of {d.deployment} verifies and lists {holder}"

        self.guard("directory", verify)

    def ports(self) -> None:
        if not self.b.listen:
            self.skip("port", f"nothing listens ({self.b.role}: outbound connections only)")
        for item in self.b.listen:
            host, _, port = item["address"].rpartition(":")
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                try:
                    sock.bind((host, int(port)))
                except OSError as e:
                    self.fail("port", f"{item['address']} ({item['what']}) cannot be bound: {e.strerror}")
                    continue
            self.ok("port", f"{item['address']} ({item['what']}) is free")

    def nats(self) -> None:
        b, name = self.b, self.b.nats_config
        if name is None:
            self.skip("nats", f"no nats-server at this site ({b.role})")
            return

        def test() -> str:
            binary = find_nats_server_binary()
            version = _nats_server_version(binary)
            check_nats_server_version(version, f"{binary}")
            text = (self.root / name).read_text()
            with tempfile.TemporaryDirectory(prefix="liaison-check-") as tmp:
                conf = Path(tmp) / "nats-server.conf"
                # The config names installed paths; test against the files where they are now.
                conf.write_text(text.replace(b.install_dir + "/", str(self.root) + "/"))
                try:
                    proc = subprocess.run(
                        [str(binary), "-t", "-c", str(conf)],
                        capture_output=True,
                        text=True,
                        timeout=NATS_CHECK_TIMEOUT_S,
                        check=False,
                    )
                except (OSError, subprocess.TimeoutExpired) as e:
                    raise ConfigError(f"cannot run {binary} -t: {e}") from e
            if proc.returncode != 0:
                why = " ".join((proc.stderr or proc.stdout).split())[-400:].replace(str(conf), name)
                raise ConfigError(f"nats-server -t refuses {name}: {why}")
            return f"nats-server -t accepts {name} ({version.split()[-1]} enforces leaf-node permissions)"

        self.guard("nats", test)

    def units(self) -> None:
        analyze = shutil.which("systemd-analyze")
        for unit in self.b.units:
            self.guard("unit", functools.partial(self._one_unit, unit, analyze))

    def _one_unit(self, unit: dict[str, str], analyze: str | None) -> str:
        path = self.root / unit["file"]
        name = path.name.replace("@.", f"@{unit['instance']}.") if unit["instance"] else path.name
        options = _parse_unit(path)
        for key, want in HARDENING.items():
            have = options.get(key)
            if have is None or (want is not None and want not in have):
                raise ConfigError(f"{unit['file']}: hardening option {key}={want or '…'} missing")
        if analyze is None:
            return f"{name} parses, hardened (systemd-analyze not installed)"
        with tempfile.TemporaryDirectory(prefix="liaison-check-") as tmp:
            copy = Path(tmp) / name
            copy.write_text(path.read_text())
            try:
                proc = subprocess.run(
                    [analyze, "verify", str(copy)],
                    capture_output=True,
                    text=True,
                    timeout=SYSTEMD_CHECK_TIMEOUT_S,
                    check=False,
                )
            except (OSError, subprocess.TimeoutExpired) as e:
                raise ConfigError(f"cannot run systemd-analyze verify: {e}") from e
        ours = [ln for ln in (proc.stderr + proc.stdout).splitlines() if name in ln or str(copy) in ln]
        if proc.returncode != 0 or ours:
            why = "; ".join(ln.replace(str(copy), unit["file"]) for ln in ours) or f"exit {proc.returncode}"
            raise ConfigError(f"systemd-analyze verify {name}: {why}")
        return f"{name} verified by systemd-analyze, hardened"


def _parse_unit(path: Path) -> dict[str, str]:
    """Options of the [Service] section (last value wins) after a syntax check of the whole file."""
    try:
        lines = path.read_text().splitlines()
    except OSError as e:
        raise ConfigError(f"cannot read unit {path.name}: {e.strerror}") from e
    section, sections, service = "", set(), {}
    for n, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            sections.add(section)
        elif "=" in line and section:
            key, _, value = line.partition("=")
            if section == "Service":
                service[key.strip()] = value.strip()
        else:
            raise ConfigError(f"unit {path.name} line {n}: neither a [Section] nor key=value")
    for required in ("Unit", "Service", "Install"):
        if required not in sections:
            raise ConfigError(f"unit {path.name}: section [{required}] missing")
    if "ExecStart" not in service:
        raise ConfigError(f"unit {path.name}: [Service] ExecStart missing")
    return service


def check_bundle(root: Path, passphrase: bytes | None) -> tuple[Bundle | None, list[Result]]:
    """Run every check on the bundle in ``root``; the manifest (None if unreadable) and the results."""
    try:
        b = Bundle.from_json(json.loads((root / "bundle.json").read_text()))
    except (OSError, ValueError, ConfigError) as e:
        return None, [Result("manifest", "FAIL", f"{root / 'bundle.json'}: {e}")]
    c = _Checker(root.resolve(), b, passphrase)
    c.ok("manifest", f"{b.role} {b.node} of {b.deployment}")
    for step in (c.config, c.certificates, c.keys, c.directory, c.ports, c.nats, c.units):
        step()
    return b, c.results
