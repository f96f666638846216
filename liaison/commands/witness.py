"""`liaison witness …`: run a witness, show its state, clear an alarm, write a config for a lab.

A witness is a directory authority (e.g. the other country's embassy) that
co-signs the gateway's tree heads after checking them; see
:mod:`gateway.witness.checks`. ``status`` exits 1 while an alarm stands or the witness is stalled
(the log has been ahead of the co-signed head for longer than
``stall_after_s``), so it can serve as a monitoring probe. ``init`` pins the
first head the witness may co-sign from only on the operator's word:
``--pin SIZE:ROOT`` or ``--head FILE`` (``liaison audit head --json`` output,
confirmed with the other embassy).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from exchange.client.connection import lab_gateway, read_lab
from exchange.core.clock import now_ms
from exchange.core.errors import ConfigError
from liaison.logs import configure

__all__ = ["register"]


def _serve(args: argparse.Namespace) -> int:
    from gateway.witness.runner import load_witness_config
    from liaison.serve.witness import serve_witness

    cfg = load_witness_config(Path(args.config))
    configure(f"witness:{cfg.witness}", args.log_format, args.log_level)
    serve_witness(cfg)
    return 0


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z"


def _status(args: argparse.Namespace) -> int:
    from gateway.witness.runner import load_state, load_witness_config

    cfg = load_witness_config(Path(args.config))
    state = load_state(cfg.state, cfg.witness)
    stalled_ms = state.stalled_for_ms(now_ms(), cfg.stall_after_s)
    doc: dict[str, Any] = state.to_json()
    doc.pop("format")
    doc["stalled"] = None
    if stalled_ms is not None:
        doc["stalled"] = {
            "for_s": stalled_ms // 1000,
            "stall_after_s": cfg.stall_after_s,
            "log_size_seen": state.behind_size,
        }
    for part in ("last", "alarm"):
        if doc[part] is not None:
            doc[part].pop("head")  # evidence stays in the state file; status shows the summary
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        last, alarm = doc["last"], doc["alarm"]
        print(f"witness   {cfg.witness}  (gateway {cfg.endpoint}, state {cfg.state})")
        if last is None:
            print("co-signed nothing yet")
        else:
            print(
                f"co-signed size {last['size']}  root {last['root']}\n"
                f"          head of {_when(last['timestamp_ms'])} by {last['gateway']}, "
                f"co-signed {_when(last['cosigned_at_ms'])}"
            )
        if alarm is None:
            print("alarm     none")
        else:
            print(
                f"ALARM     {alarm['kind']} raised {_when(alarm['raised_at_ms'])}: {alarm['reason']}\n"
                f"          offending head: size {alarm['size']} root {alarm['root']}\n"
                "          co-signing is suspended until `liaison witness clear`"
            )
        if stalled_ms is not None:
            print(
                f"STALLED   the log reached size {state.behind_size} {stalled_ms // 1000} s ago "
                f"(limit {cfg.stall_after_s:g} s) and no newer head is co-signed"
            )
    return 1 if doc["alarm"] is not None or stalled_ms is not None else 0


def _clear(args: argparse.Namespace) -> int:
    from gateway.witness.runner import load_state, load_witness_config
    from liaison.serve.witness import clear_alarm

    cfg = load_witness_config(Path(args.config))
    before = load_state(cfg.state, cfg.witness)
    after, kept = clear_alarm(cfg.state, cfg.witness, forget_head=args.forget_head)
    if kept is None:
        print("nothing to clear")
        return 0
    what = f"alarm ({before.alarm.kind}) cleared" if before.alarm is not None else "no alarm"
    tail = (
        "; co-signed head forgotten: the next head must extend the configured pin"
        if args.forget_head
        else f"; checks resume from co-signed size {after.last.size if after.last else 0}"
    )
    print(f"{what}{tail}\nprevious state (with its signed evidence) kept in {kept}")
    return 0


def _toml(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def _pin(args: argparse.Namespace) -> str | None:
    """The operator-confirmed pin from ``--pin`` or ``--head``, as ``SIZE:ROOT`` (checked)."""
    from gateway.witness.checks import Pin

    text: str | None = args.pin
    if args.head:
        try:
            doc = json.loads(Path(args.head).read_text())
            text = f"{int(doc['size'])}:{doc['root']}"
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ConfigError(
                f"--head {args.head}: not a tree head (liaison audit head --json): {e}"
            ) from None
    if text is None:
        return None
    try:
        return str(Pin.parse(text))
    except ValueError as e:
        raise ConfigError(f"--pin: {e}") from None


def _init(args: argparse.Namespace) -> int:
    if not args.interval > 0:
        raise ConfigError("--interval must be a positive number of seconds")
    if args.pin and args.head:
        raise ConfigError("give --pin or --head, not both")
    pin = _pin(args)
    lab = Path(args.lab).resolve()
    endpoint, _ = lab_gateway(lab)
    _, desc = read_lab(lab)  # the directory and operator TLS entries, for the witness's own config
    keys_dir = lab / "keys" / args.authority
    if not (keys_dir / "keystore.json").exists():
        raise ConfigError(f"the lab has no keystore for authority {args.authority} ({keys_dir})")
    out = Path(args.dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    config = out / "witness.toml"
    if config.exists() and not args.force:
        raise ConfigError(f"{config} exists already (use --force to overwrite)")
    text = (
        "# Witness config written by `liaison witness init` for the lab in " + str(lab) + "\n"
        f'[witness]\nid = {_toml(args.authority)}\nstate = "witness.json"\ninterval_s = {args.interval}\n'
        + (f"pin = {_toml(pin)}\n\n" if pin else "\n")
        + f"[keys]\ndir = {_toml(str(keys_dir))}\npassphrase_file = {_toml(str(lab / 'passphrase'))}\n\n"
        f"[gateway]\nendpoint = {_toml(endpoint)}\n\n"
        f"[directory]\nfile = {_toml(str(desc.get('directory') or lab / 'directory.pb'))}\n"
    )
    tls = desc.get("operator_tls")
    if isinstance(tls, dict) and all(isinstance(tls.get(k), str) for k in ("ca", "cert", "key")):
        text += "\n[tls]\n" + "".join(f"{k} = {_toml(tls[k])}\n" for k in ("ca", "cert", "key"))
    config.write_text(text)
    if pin is None:
        print(
            "warning: no pin: the witness co-signs nothing until [witness] pin is set to a head "
            "confirmed out of band (liaison audit head)",
            file=sys.stderr,
        )
    print(config)
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("witness", help="co-sign the gateway's tree heads after checking them")
    inner = parser.add_subparsers(dest="witness_command", required=True, metavar="COMMAND")

    serve = inner.add_parser("serve", help="follow, check and co-sign tree heads (foreground)")
    serve.add_argument("--config", required=True, help="witness config file (TOML)")
    serve.add_argument("--log-format", choices=("json", "console"), default="json")
    serve.add_argument("--log-level", default="info")
    serve.set_defaults(handler=_serve)

    status = inner.add_parser("status", help="last co-signed head, any alarm or stall (exit 1 on either)")
    status.add_argument("--config", required=True, help="witness config file (TOML)")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(handler=_status)

    clear = inner.add_parser("clear", help="clear a standing alarm so the witness co-signs again")
    clear.add_argument("--config", required=True, help="witness config file (TOML)")
    clear.add_argument(
        "--forget-head",
        action="store_true",
        help="also forget the last co-signed head (the next head is trusted on first use)",
    )
    clear.set_defaults(handler=_clear)

    init = inner.add_parser("init", help="write a witness config for a running lab")
    init.add_argument("--dir", required=True, help="folder for witness.toml (and its state file)")
    init.add_argument("--lab", required=True, help="the lab folder (holds lab.json)")
    init.add_argument("--authority", required=True, help="authority id to witness as")
    init.add_argument("--interval", type=float, default=2.0, help="seconds between rounds")
    init.add_argument("--force", action="store_true", help="overwrite an existing witness.toml")
    init.add_argument(
        "--pin", help="SIZE:ROOT of a tree head confirmed out of band (the first head must extend it)"
    )
    init.add_argument("--head", help="a tree head file (liaison audit head --json) confirmed out of band")
    init.set_defaults(handler=_init)
