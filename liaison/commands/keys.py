"""`liaison keys …`: create, check and rotate keystores, export public keys, run the PKI.

What it does: registers the ``keys`` subcommands on an argparse parser; each
handler ``_cmd_*(args) -> int`` raises ``LiaisonError`` subclasses, which
``liaison.cli`` (or ``main`` here) turns into ``error: …`` and exit 2.

What it does not: print or log private keys or passphrases; private keys
only ever reach disk sealed by ``keys.keystore``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from exchange.core import expiry, primitives
from exchange.core import identity as identity_mod
from exchange.core.clock import now_ms
from exchange.core.errors import ConfigError, KeystoreError, LiaisonError, map_exceptions
from keys import keystore, pki, rotation
from keys.directory_file import public_to_json

__all__ = ["main", "register"]


def _passphrase(args: argparse.Namespace) -> bytes:
    return keystore.passphrase_from(args.passphrase_file)


def _cmd_init(args: argparse.Namespace) -> int:
    passphrase = _passphrase(args)
    ident = identity_mod.generate(args.office, now_ms(), valid_days=args.valid_days)
    path = keystore.create(args.dir, ident, passphrase)
    print(f"created keystore {path} for {ident.owner_id}")
    for key in ident.public_keys():
        print(f"  {key.algorithm.name.lower():<20} {key.key_id}")
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    ident = keystore.open_keystore(args.dir, _passphrase(args))
    probe = b"liaison keys verify probe"
    for key in ident.keys:
        if key.algorithm.is_signing:
            sig = primitives.sign(key.key, probe, "keys-verify")
            primitives.verify(key.algorithm, key.public, sig, probe, "keys-verify")
        else:
            secret = primitives.random_bytes(primitives.AEAD_KEY_BYTES)
            enc = primitives.wrap(key.algorithm, key.public, secret, b"keys-verify")
            if primitives.unwrap(key.key, enc, b"keys-verify") != secret:
                raise KeystoreError(f"key {key.key_id} does not round-trip")
    print(f"ok: keystore of {ident.owner_id}: {len(ident.keys)} keys sign/verify and wrap/unwrap")
    return 0


def _cmd_export_public(args: argparse.Namespace) -> int:
    owner, keys = keystore.read_public(args.dir)
    _write_public(json.dumps(public_to_json(owner, keys), indent=2) + "\n", args.out, owner)
    return 0


def _write_public(text: str, out: Path | None, owner: str) -> None:
    if out is None:
        sys.stdout.write(text)
        return
    with map_exceptions({OSError: ConfigError}, f"cannot write {out}"):
        out.write_text(text)
    print(f"wrote public identity of {owner} to {out}")


def _cmd_rotate(args: argparse.Namespace) -> int:
    passphrase = _passphrase(args)
    old = keystore.open_keystore(args.dir, passphrase)
    ident = rotation.rotate_identity(
        old,
        now_ms=now_ms(),
        algorithms=rotation.ROTATION_GROUPS[args.algorithms],
        valid_days=args.valid_days,
        overlap_days=args.overlap_days,
    )
    keystore.update(args.dir, ident, passphrase)
    before = {k.key_id for k in old.keys}
    for key in ident.public_keys():
        if key.key_id not in before:
            # stderr: stdout carries the public identity JSON when --out is not given.
            print(f"new {key.algorithm.name.lower():<20} {key.key_id}", file=sys.stderr)
    text = json.dumps(public_to_json(ident.owner_id, ident.public_keys()), indent=2) + "\n"
    _write_public(text, args.out, ident.owner_id)
    return 0


def _read_certs(directory: Path | None) -> dict[str, bytes]:
    if directory is None:
        return {}
    with map_exceptions({OSError: ConfigError}, f"cannot read certificates in {directory}"):
        paths = sorted(p for p in directory.iterdir() if p.suffix in (".crt", ".pem") and p.is_file())
        return {p.name: p.read_bytes() for p in paths}


def _cmd_expiry(args: argparse.Namespace) -> int:
    owner, public = keystore.read_public(args.dir)
    items = expiry.expiry_report(public, _read_certs(args.certs), now_ms())
    warned = [i for i in items if i.warn(args.warn_days)]
    if args.json:
        doc = {
            "owner": owner,
            "warn_days": args.warn_days,
            "items": [
                {"name": i.name, "kind": i.kind, "days_left": i.days_left, "warning": i.warn(args.warn_days)}
                for i in items
            ],
        }
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    else:
        print(f"expiry for {owner} (warning from {args.warn_days} days before):")
        for i in items:
            print(f"  {i.kind:<12} {i.name:<64} {i.days_left:>6} days")
    for i in warned:
        print(f"warning: {i.describe()}", file=sys.stderr if args.json else sys.stdout)
    return 0


def _ca_passphrase(args: argparse.Namespace) -> bytes:
    return keystore.passphrase_from(
        args.ca_passphrase_file, var=pki.CA_PASSPHRASE_ENV, flag="--ca-passphrase-file"
    )


def _cmd_pki_init(args: argparse.Namespace) -> int:
    issued = pki.create_ca(args.dir, args.deployment, passphrase=_ca_passphrase(args))
    print(f"created CA {issued.cert} (key {issued.key}, encrypted, mode 0600)")
    return 0


def _cmd_pki_issue(args: argparse.Namespace) -> int:
    hosts: Sequence[str] = args.host or ("127.0.0.1", "localhost")
    issued = pki.issue(args.dir, args.kind, args.name, hosts, ca_passphrase=_ca_passphrase(args))
    print(f"issued {args.kind} certificate {issued.cert} (key {issued.key}, mode 0600)")
    return 0


def register(subparsers: Any) -> None:
    """Add ``keys`` and its subcommands to ``subparsers`` (from ``add_subparsers``)."""
    keys = subparsers.add_parser("keys", help="office keys and the deployment PKI")
    sub = keys.add_subparsers(dest="keys_command", required=True)

    p = sub.add_parser("init", help="create an identity and its encrypted keystore")
    p.add_argument("--office", required=True, help="owner id (office, gateway or authority)")
    p.add_argument("--dir", type=Path, required=True)
    p.add_argument("--passphrase-file", type=Path)
    p.add_argument("--valid-days", type=int, default=identity_mod.DEFAULT_VALID_DAYS)
    p.set_defaults(handler=_cmd_init)

    p = sub.add_parser("verify", help="open the keystore and check every key works")
    p.add_argument("--dir", type=Path, required=True)
    p.add_argument("--passphrase-file", type=Path)
    p.set_defaults(handler=_cmd_verify)

    p = sub.add_parser("export-public", help="print the public identity (JSON) for the directory")
    p.add_argument("--dir", type=Path, required=True)
    p.add_argument("--out", type=Path)
    p.set_defaults(handler=_cmd_export_public)

    p = sub.add_parser("rotate", help="add the next keys to a keystore (old keys are kept)")
    p.add_argument("--dir", type=Path, required=True)
    p.add_argument("--passphrase-file", type=Path)
    p.add_argument(
        "--algorithms",
        choices=list(rotation.ROTATION_GROUPS),
        default="all",
        help="signing (Ed25519, ML-DSA-65), encryption (X25519, ML-KEM-768+X25519) or all",
    )
    p.add_argument(
        "--overlap-days",
        type=int,
        default=rotation.DEFAULT_OVERLAP_DAYS,
        help="the replaced keys stay valid this long",
    )
    p.add_argument("--valid-days", type=int, default=identity_mod.DEFAULT_VALID_DAYS)
    p.add_argument("--out", type=Path, help="write the public identity JSON here (default: stdout)")
    p.set_defaults(handler=_cmd_rotate)

    p = sub.add_parser("expiry", help="days until the keys in use and the certificates expire")
    p.add_argument("--dir", type=Path, required=True, help="keystore directory (no passphrase needed)")
    p.add_argument("--certs", type=Path, help="directory of *.crt / *.pem certificates")
    p.add_argument("--warn-days", type=int, default=expiry.WARN_DAYS)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_cmd_expiry)

    pki_parser = sub.add_parser("pki", help="deployment TLS PKI")
    pki_sub = pki_parser.add_subparsers(dest="pki_command", required=True)
    p = pki_sub.add_parser("init", help="create the deployment CA")
    p.add_argument("--dir", type=Path, required=True)
    p.add_argument("--deployment", required=True)
    p.add_argument(
        "--ca-passphrase-file", type=Path, help=f"CA key passphrase (else ${pki.CA_PASSPHRASE_ENV})"
    )
    p.set_defaults(handler=_cmd_pki_init)
    p = pki_sub.add_parser("issue", help="issue a node/client/operator certificate")
    p.add_argument("--dir", type=Path, required=True)
    p.add_argument("--kind", choices=["node", "client", "operator", "authority"], required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--host", action="append", help="DNS name or IP (nodes; repeatable)")
    p.add_argument(
        "--ca-passphrase-file", type=Path, help=f"CA key passphrase (else ${pki.CA_PASSPHRASE_ENV})"
    )
    p.set_defaults(handler=_cmd_pki_issue)


def run(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    """Parse and dispatch; a LiaisonError becomes one ``error: …`` line and exit 2."""
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except LiaisonError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry for tests: ``main(["keys", "init", ...])``."""
    parser = argparse.ArgumentParser(prog="liaison")
    register(parser.add_subparsers(dest="command", required=True))
    return run(parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
