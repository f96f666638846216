"""`liaison directory …`: build, sign, verify and show the signed directory.

What it does: edits a JSON draft (``init``, ``add-office``, ``add-gateway``,
``set-policy``, ``set-limits``, ``set-key-status``, ``rotate-key``,
``next-version``), lets each authority add its signatures to the binary
signed file (``sign``; signatures accumulate), checks a signed file (``verify``) and prints it
(``show``). Handlers ``_cmd_*(args) -> int`` raise ``LiaisonError``
subclasses; ``liaison.cli`` turns them into ``error: …`` and exit 2.

What it does not: distribute the directory (nodes receive it over NATS) or
decide trust itself: verification is ``exchange.core.directory.verify_directory``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from exchange.core import model
from exchange.core.clock import now_ms
from exchange.core.directory import (
    SignedDirectory,
    TrustAnchor,
    counting_authorities,
    directory_digest,
    sign_directory,
    verify_directory,
)
from exchange.core.errors import ConfigError, DirectoryError, DirectoryInvalidError, map_exceptions
from keys import directory_file as files
from keys import keystore, rotation
from liaison.commands.keys import run

__all__ = ["main", "register"]


def _build(**fields: Any) -> model.Directory:
    with map_exceptions({ValueError: DirectoryInvalidError}):
        return model.Directory(**fields)


def _edit(path: Path, **changes: Any) -> model.Directory:
    fields = {f.name: getattr(_draft(path), f.name) for f in dataclasses.fields(model.Directory)}
    fields.update(changes, issued_ms=now_ms())
    directory = _build(**fields)
    files.save_draft(path, directory)
    return directory


def _draft(path: Path) -> model.Directory:
    loaded = files.load_any(path)
    if isinstance(loaded, SignedDirectory):
        raise ConfigError(f"{path} is signed; start a draft with `directory next-version`")
    return loaded


def _public(spec: Path, expected_owner: str) -> tuple[model.PublicKey, ...]:
    owner, keys = files.load_public(spec)
    if owner != expected_owner:
        raise ConfigError(f"{spec} holds the keys of {owner!r}, not {expected_owner!r}")
    return keys


def _csv(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def _fmt_ms(ms: int) -> str:
    if ms == 0:
        return "-"
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M")


def _key_state(key: model.PublicKey, now_ms: int) -> str:
    if key.revoked_at(now_ms):
        return "REVOKED"
    if not key.in_window(now_ms):
        return "expired" if key.not_after_ms and now_ms >= key.not_after_ms else "not-yet-valid"
    return key.status.name.lower()


# --- handlers ---------------------------------------------------------------------


def _cmd_init(args: argparse.Namespace) -> int:
    if args.out.exists() and not args.force:
        raise ConfigError(f"{args.out} exists; pass --force to overwrite it")
    authorities = []
    for spec in args.authority:
        authority_id, sep, path = spec.partition("=")
        if not sep:
            raise ConfigError(f"--authority {spec!r}: expected ID=PUBLIC_JSON")
        keys = _public(Path(path), authority_id)
        signing = tuple(k for k in keys if k.algorithm.is_signing)
        with map_exceptions({ValueError: DirectoryInvalidError}):
            authorities.append(model.Authority(id=authority_id, keys=signing))
    directory = _build(
        deployment=args.deployment,
        version=args.version,
        issued_ms=now_ms(),
        offices=(),
        gateways=(),
        authorities=tuple(authorities),
        threshold=args.threshold,
    )
    files.save_draft(args.out, directory)
    print(f"draft {args.out}: {args.deployment} v{args.version}, {args.threshold}-of-{len(authorities)}")
    return 0


def _cmd_add_office(args: argparse.Namespace) -> int:
    d = _draft(args.file)
    with map_exceptions({ValueError: DirectoryInvalidError}):
        office = model.Office(
            id=args.id,
            keys=_public(args.public, args.id),
            country=args.country,
            agency=args.agency,
            city=args.city,
            display_name=args.name,
        )
    offices = tuple(o for o in d.offices if o.id != args.id)
    _edit(args.file, offices=(*offices, office))
    print(f"{'replaced' if len(offices) < len(d.offices) else 'added'} office {args.id}")
    return 0


def _cmd_add_gateway(args: argparse.Namespace) -> int:
    d = _draft(args.file)
    with map_exceptions({ValueError: DirectoryInvalidError}):
        gateway = model.Gateway(
            id=args.id, keys=_public(args.public, args.id), country=args.country, display_name=args.name
        )
    gateways = tuple(g for g in d.gateways if g.id != args.id)
    _edit(args.file, gateways=(*gateways, gateway))
    print(f"{'replaced' if len(gateways) < len(d.gateways) else 'added'} gateway {args.id}")
    return 0


def _cmd_set_policy(args: argparse.Namespace) -> int:
    d = _draft(args.file)
    with map_exceptions({ValueError: ConfigError}):
        kinds = frozenset(model.Kind.parse(k) for k in _csv(args.kinds))
    recipients = frozenset(_csv(args.recipients))
    if not kinds or not recipients:
        raise ConfigError("set-policy needs at least one kind and one recipient")
    known = {*d.office_ids(), "*"}
    unknown = sorted(({args.sender} | recipients) - known)
    if unknown:
        raise ConfigError(f"policy names unknown offices: {', '.join(unknown)}")
    rule = model.PolicyRule(args.sender, kinds, recipients)
    kept = tuple(r for r in d.policy if r != rule and not (args.replace and r.sender == args.sender))
    _edit(args.file, policy=(*kept, rule))
    kind_labels = ",".join(k.label for k in sorted(kinds))
    print(f"policy: {args.sender} may send {kind_labels} to {','.join(sorted(recipients))}")
    return 0


_LIMIT_FIELDS = (
    "max_body_bytes",
    "max_envelope_bytes",
    "max_clock_skew_s",
    "max_ttl_s",
    "max_recipients",
)


def _cmd_set_limits(args: argparse.Namespace) -> int:
    d = _draft(args.file)
    changes: dict[str, Any] = {f: getattr(args, f) for f in _LIMIT_FIELDS if getattr(args, f) is not None}
    if args.minimum_suite is not None:
        changes["minimum_suite"] = model.Suite.parse(args.minimum_suite)
    with map_exceptions({ValueError: DirectoryInvalidError}):
        limits = dataclasses.replace(d.limits, **changes)
    _edit(args.file, limits=limits)
    print(f"limits: {limits}")
    return 0


def _cmd_set_key_status(args: argparse.Namespace) -> int:
    d = _draft(args.file)
    status = model.KeyStatus[args.status.upper()]
    at_ms = args.at_ms if args.at_ms is not None else (now_ms() if status is model.KeyStatus.REVOKED else 0)
    changed = rotation.set_key_status(d, args.key_id, status, at_ms=at_ms)
    _edit(args.file, offices=changed.offices, gateways=changed.gateways, authorities=changed.authorities)
    revoked = f" from {_fmt_ms(at_ms)} ({at_ms} ms)" if status is model.KeyStatus.REVOKED else ""
    print(f"key {args.key_id}: {status.name.lower()}{revoked}")
    return 0


def _holder_keys(d: model.Directory, owner: str) -> tuple[model.PublicKey, ...]:
    holder = d.office(owner) or d.gateway(owner) or d.authority(owner)
    return holder.keys if holder is not None else ()


def _cmd_rotate_key(args: argparse.Namespace) -> int:
    d = _draft(args.file)
    changed = rotation.announce_keys(
        d, args.owner, _public(args.public, args.owner), now_ms=now_ms(), overlap_days=args.overlap_days
    )
    _edit(args.file, offices=changed.offices, gateways=changed.gateways, authorities=changed.authorities)
    old = {k.key_id: k for k in _holder_keys(d, args.owner)}
    for k in _holder_keys(changed, args.owner):
        label = f"{k.algorithm.name.lower():<18} {k.key_id}"
        if k.key_id not in old:
            print(f"{args.owner}: new {label}  active")
        elif old[k.key_id] != k:
            print(f"{args.owner}: old {label}  retiring until {_fmt_ms(k.not_after_ms)}")
    print(f"draft {args.file}: sign it with the authorities, then publish it")
    return 0


def _cmd_next_version(args: argparse.Namespace) -> int:
    signed = files.load_signed(args.source)
    d = dataclasses.replace(signed.directory, version=signed.version + 1, issued_ms=now_ms())
    files.save_draft(args.out, d)
    print(f"draft {args.out}: {d.deployment} v{d.version} (from v{signed.version})")
    return 0


def _cmd_sign(args: argparse.Namespace) -> int:
    target = files.load_any(args.file)
    directory = target.directory if isinstance(target, SignedDirectory) else target
    ident = keystore.open_keystore(args.keys, keystore.passphrase_from(args.passphrase_file))
    if ident.owner_id != args.authority:
        raise ConfigError(f"keystore {args.keys} belongs to {ident.owner_id!r}, not {args.authority!r}")
    listed = directory.authority(args.authority)
    keys = ident.signing_keys(model.Suite.HYBRID_PQ)
    if listed is not None:
        ours = set(ident.signing_key_ids(model.Suite.HYBRID_PQ))
        if not {k.key_id for k in listed.keys if k.algorithm.is_signing} <= ours:
            raise DirectoryError(f"keystore keys are not the keys the directory lists for {args.authority}")
    signed = sign_directory(target, args.authority, keys)
    files.save_signed(args.out, signed)
    note = "" if listed is not None else " (not an authority of this version: rotation signature)"
    print(f"signed {directory.deployment} v{directory.version} as {args.authority} -> {args.out}{note}")
    print(f"signatures from: {', '.join(signed.signed_by())}")
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    data = files.read_signed_bytes(args.file)
    if args.trusted is not None:
        trusted = files.load_signed(args.trusted).directory
        signed = verify_directory(data, trusted=trusted, anchor=None)
        against, signers = f"trusted v{trusted.version}", trusted.authorities
    else:
        anchor_src = args.anchor or args.file
        anchor = TrustAnchor.from_directory(files.load_signed(anchor_src).directory)
        signed = verify_directory(data, trusted=None, anchor=anchor)
        against = (
            f"anchor {anchor_src}" if args.anchor else "its own authorities only (no --anchor/--trusted)"
        )
        signers = anchor.authorities
    counted = counting_authorities(signed, signers)
    print(
        f"valid: {signed.directory.deployment} v{signed.version} digest {directory_digest(signed)[:16]} "
        f"signed by {', '.join(counted)} against {against}"
    )
    return 0


def _show_json(loaded: model.Directory | SignedDirectory) -> None:
    if isinstance(loaded, SignedDirectory):
        doc = files.directory_to_json(loaded.directory)
        doc["signed"] = {"digest": directory_digest(loaded), "signatures_from": list(loaded.signed_by())}
    else:
        doc = files.directory_to_json(loaded)
    sys.stdout.write(json.dumps(doc, indent=2) + "\n")


def _cmd_show(args: argparse.Namespace) -> int:
    loaded = files.load_any(args.file)
    if args.json:
        _show_json(loaded)
        return 0
    d = loaded.directory if isinstance(loaded, SignedDirectory) else loaded
    now = now_ms()
    lines = [f"directory {d.deployment} v{d.version} issued {_fmt_ms(d.issued_ms)}"]
    if isinstance(loaded, SignedDirectory):
        lines.append(f"digest {directory_digest(loaded)}  signatures from: {', '.join(loaded.signed_by())}")
    else:
        lines.append("UNSIGNED DRAFT")
    lines.append(f"authorities ({d.threshold} of {len(d.authorities)} must sign):")
    holders: list[tuple[str, model.Office | model.Gateway | model.Authority, str]] = [
        ("authority", a, a.country) for a in d.authorities
    ]
    holders += [("office", o, f"{o.country} {o.agency} {o.city} {o.display_name}".strip()) for o in d.offices]
    holders += [("gateway", g, f"{g.country} {g.display_name}".strip()) for g in d.gateways]
    for what, holder, info in holders:
        lines.append(f"  {what:<9} {holder.id:<24} {info}")
        for k in holder.keys:
            window = f"{_fmt_ms(k.not_before_ms)} .. {_fmt_ms(k.not_after_ms)}"
            revoked = f" revoked {_fmt_ms(k.revoked_at_ms)}" if k.revoked_at_ms else ""
            lines.append(
                f"      {k.algorithm.name.lower():<18} {k.key_id}  {_key_state(k, now):<13} {window}{revoked}"
            )
    lines.append("policy:")
    for r in d.policy or ():
        kinds = ",".join(k.label for k in sorted(r.kinds))
        lines.append(f"  {r.sender:<24} -> {','.join(sorted(r.recipients)):<30} {kinds}")
    if not d.policy:
        lines.append("  (none: every message is denied)")
    lim = d.limits
    lines.append(
        f"limits: body {lim.max_body_bytes} B, envelope {lim.max_envelope_bytes} B, "
        f"skew {lim.max_clock_skew_s} s, ttl {lim.max_ttl_s} s, "
        f"recipients {lim.max_recipients}, minimum suite {lim.minimum_suite.label}"
    )
    print("\n".join(lines))
    return 0


# --- parser -----------------------------------------------------------------------


def register(subparsers: Any) -> None:
    """Add ``directory`` and its subcommands to ``subparsers``."""
    top = subparsers.add_parser("directory", help="build, sign, verify and show the directory")
    sub = top.add_subparsers(dest="directory_command", required=True)

    p = sub.add_parser("init", help="start a draft directory")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--deployment", required=True)
    p.add_argument("--authority", action="append", required=True, metavar="ID=PUBLIC_JSON")
    p.add_argument("--threshold", type=int, required=True)
    p.add_argument("--version", type=int, default=1)
    p.add_argument("--force", action="store_true")
    p.set_defaults(handler=_cmd_init)

    p = sub.add_parser("add-office", help="add or replace an office")
    p.add_argument("--file", type=Path, required=True)
    p.add_argument("--id", required=True)
    p.add_argument("--country", required=True)
    p.add_argument("--agency", required=True)
    p.add_argument("--city", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--public", type=Path, required=True, metavar="PUBLIC_JSON")
    p.set_defaults(handler=_cmd_add_office)

    p = sub.add_parser("add-gateway", help="add or replace a gateway")
    p.add_argument("--file", type=Path, required=True)
    p.add_argument("--id", required=True)
    p.add_argument("--country", required=True)
    p.add_argument("--name", default="")
    p.add_argument("--public", type=Path, required=True, metavar="PUBLIC_JSON")
    p.set_defaults(handler=_cmd_add_gateway)

    p = sub.add_parser("set-policy", help="allow a sender to send kinds to recipients")
    p.add_argument("--file", type=Path, required=True)
    p.add_argument("--sender", required=True, help="office id or *")
    p.add_argument("--kinds", required=True, help="alert,case-message,consular-request")
    p.add_argument("--recipients", required=True, help="office ids separated by commas, or *")
    p.add_argument("--replace", action="store_true", help="drop the sender's other rules")
    p.set_defaults(handler=_cmd_set_policy)

    p = sub.add_parser("set-limits", help="change size, time and suite limits")
    p.add_argument("--file", type=Path, required=True)
    for name in _LIMIT_FIELDS:
        p.add_argument("--" + name.replace("_", "-"), dest=name, type=int)
    p.add_argument("--minimum-suite", choices=[s.label for s in model.Suite])
    p.set_defaults(handler=_cmd_set_limits)

    p = sub.add_parser("set-key-status", help="mark a key active, retiring or revoked")
    p.add_argument("--file", type=Path, required=True)
    p.add_argument("--key-id", required=True)
    p.add_argument("--status", choices=["active", "retiring", "revoked"], required=True)
    p.add_argument("--at-ms", type=int, help="revocation time (Unix ms; default now)")
    p.set_defaults(handler=_cmd_set_key_status)

    p = sub.add_parser(
        "rotate-key", help="announce an owner's new keys (active) and retire the old ones after an overlap"
    )
    p.add_argument("--file", type=Path, required=True, help="draft (from next-version)")
    p.add_argument("--owner", required=True, help="office, gateway or authority id")
    p.add_argument("--public", type=Path, required=True, metavar="PUBLIC_JSON", help="from `keys rotate`")
    p.add_argument("--overlap-days", type=int, default=rotation.DEFAULT_OVERLAP_DAYS)
    p.set_defaults(handler=_cmd_rotate_key)

    p = sub.add_parser("next-version", help="start a draft of the next version of a signed directory")
    p.add_argument("--from", dest="source", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(handler=_cmd_next_version)

    p = sub.add_parser("sign", help="add one authority's signatures (they accumulate)")
    p.add_argument("--file", type=Path, required=True, help="draft JSON or signed directory")
    p.add_argument("--authority", required=True)
    p.add_argument("--keys", type=Path, required=True, help="the authority's keystore directory")
    p.add_argument("--passphrase-file", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(handler=_cmd_sign)

    p = sub.add_parser("verify", help="check signatures, threshold and version")
    p.add_argument("--file", type=Path, required=True)
    group = p.add_mutually_exclusive_group()
    group.add_argument("--trusted", type=Path, help="the previous signed directory")
    group.add_argument("--anchor", type=Path, help="the genesis signed directory (pinned)")
    p.set_defaults(handler=_cmd_verify)

    p = sub.add_parser("show", help="print offices, keys, policy and limits")
    p.add_argument("--file", type=Path, required=True)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_cmd_show)


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry for tests: ``main(["directory", "init", ...])``."""
    parser = argparse.ArgumentParser(prog="liaison")
    register(parser.add_subparsers(dest="command", required=True))
    return run(parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
