"""`liaison deploy render` and `liaison deploy check`: per-node bundles from an inventory, and their check.

``render`` writes one bundle per node (see :mod:`liaison.bundles.render`);
``check`` validates one bundle or every bundle under a folder on the host
it runs on (see :mod:`liaison.bundles.check`) and exits 0 only when every
check passed. Handlers raise ``LiaisonError`` subclasses for user errors.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from exchange.core.clock import now_ms
from exchange.core.errors import ConfigError
from keys.keystore import PASSPHRASE_ENV, passphrase_from
from keys.pki import CA_PASSPHRASE_ENV

__all__ = ["register"]


def _render(args: argparse.Namespace) -> int:
    from keys.inventory import load_site_inventory
    from liaison.bundles.render import DEFAULT_TEMPLATES, KEYS_BUNDLED, KEYS_ON_NODE, render

    if args.passphrase_file is not None:
        raise ConfigError(
            "deploy render takes no --passphrase-file: --keys bundled generates one passphrase per "
            "keystore owner (_private/<owner>.passphrase)"
        )
    keys = args.keys or KEYS_ON_NODE
    ca_passphrase = passphrase_from(
        args.ca_passphrase_file, var=CA_PASSPHRASE_ENV, flag="--ca-passphrase-file"
    )
    site = load_site_inventory(Path(args.inventory))
    out = Path(args.out)
    bundles = render(
        site,
        out,
        keys=keys,
        ca_passphrase=ca_passphrase,
        now_ms=now_ms(),
        templates=Path(args.templates) if args.templates else DEFAULT_TEMPLATES,
    )
    print(f"rendered {len(bundles)} bundles of {site.deployment} into {out} (keys: {keys})")
    for b in bundles:
        ports = ", ".join(x["address"] for x in b.listen) or "-"
        print(f"  {b.node:<28} {b.role:<8} {b.host:<44} {ports}")
    private = "CA key, operator certificate" + (
        ", every keystore and passphrase" if keys == KEYS_BUNDLED else ""
    )
    print(f"  {'_private':<28} {private}: keep offline, never ship")
    return 0


def _check(args: argparse.Namespace) -> int:
    from liaison.bundles.check import check_bundle, find_bundles

    if args.passphrase_file is not None:
        passphrase: bytes | None = passphrase_from(args.passphrase_file)
    else:
        value = os.environ.get(PASSPHRASE_ENV)
        passphrase = value.encode() if value else None
    failed = total = 0
    for root in find_bundles(Path(args.dir)):
        b, results = check_bundle(root, passphrase)
        print(f"{root}: {b.role + ' ' + b.node if b else 'unreadable bundle'}")
        for r in results:
            print(r.line())
        bad = sum(r.failed for r in results)
        total += len(results)
        failed += bad
        print(f"  => {'FAILED: ' + str(bad) + ' of ' + str(len(results)) + ' checks' if bad else 'OK'}")
    print(f"verdict: {'FAILED' if failed else 'OK'} ({total - failed} of {total} checks passed or skipped)")
    return 1 if failed else 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("deploy", help="render per-node deployment bundles and check them")
    inner = parser.add_subparsers(dest="deploy_command", required=True, metavar="COMMAND")

    p = inner.add_parser("render", help="write one bundle per node from an inventory")
    p.add_argument("--inventory", required=True, help="deployment inventory (TOML)")
    p.add_argument("--out", required=True, help="new folder for the bundles")
    p.add_argument("--passphrase-file", type=Path, help=argparse.SUPPRESS)  # refused: one per owner now
    p.add_argument(
        "--ca-passphrase-file", type=Path,
        help=f"encrypt the CA key with this passphrase (else ${CA_PASSPHRASE_ENV}); not the keystores'",
    )  # fmt: skip
    p.add_argument(
        "--keys",
        choices=("on-node", "bundled"),
        help="on-node (default): nodes create their own keys; bundled: ship encrypted keystores "
        "and the signed directory, each keystore under its own generated passphrase (_private/)",
    )
    p.add_argument("--templates", help="systemd unit templates (default: deploy/systemd)")
    p.set_defaults(handler=_render)

    p = inner.add_parser("check", help="validate a bundle (or every bundle in a folder) on this host")
    p.add_argument("dir", help="a bundle folder, or the folder render wrote")
    p.add_argument(
        "--passphrase-file",
        type=Path,
        help=f"keystore passphrase (else ${PASSPHRASE_ENV}, else the bundle's own passphrase file)",
    )
    p.set_defaults(handler=_check)
