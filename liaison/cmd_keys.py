"""`liaison keys …`: create and check keystores, export public keys, run the PKI.

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
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from exchange import primitives
from exchange.errors import KeystoreError, LiaisonError
from keys import identity as identity_mod
from keys import keystore, pki
from keys.directory_file import public_to_json

__all__ = ["main", "register"]


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _passphrase(args: argparse.Namespace) -> bytes:
    return keystore.passphrase_from(args.passphrase_file)


def _cmd_init(args: argparse.Namespace) -> int:
    passphrase = _passphrase(args)
    ident = identity_mod.generate(args.office, _now_ms(), valid_days=args.valid_days)
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
    text = json.dumps(public_to_json(owner, keys), indent=2) + "\n"
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.write_text(text)
        print(f"wrote public identity of {owner} to {args.out}")
    return 0


def _cmd_pki_init(args: argparse.Namespace) -> int:
    issued = pki.create_ca(args.dir, args.deployment)
    print(f"created CA {issued.cert} (key {issued.key}, mode 0600)")
    return 0


def _cmd_pki_issue(args: argparse.Namespace) -> int:
    hosts: Sequence[str] = args.host or ("127.0.0.1", "localhost")
    issued = pki.issue(args.dir, args.kind, args.name, hosts)
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

    pki_parser = sub.add_parser("pki", help="deployment TLS PKI")
    pki_sub = pki_parser.add_subparsers(dest="pki_command", required=True)
    p = pki_sub.add_parser("init", help="create the deployment CA")
    p.add_argument("--dir", type=Path, required=True)
    p.add_argument("--deployment", required=True)
    p.set_defaults(handler=_cmd_pki_init)
    p = pki_sub.add_parser("issue", help="issue a node/client/operator certificate")
    p.add_argument("--dir", type=Path, required=True)
    p.add_argument("--kind", choices=["node", "client", "operator", "authority"], required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--host", action="append", help="DNS name or IP (nodes; repeatable)")
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
