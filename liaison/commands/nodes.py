"""`liaison office serve` and `liaison gateway serve`: the long-running node processes."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from exchange.office.config import load_office_config
from gateway.config import load_gateway_config
from liaison.logs import configure

__all__ = ["register"]


def _office_serve(args: argparse.Namespace) -> int:
    from liaison.serve.office import serve_office

    cfg = load_office_config(Path(args.config))
    configure(f"office:{cfg.office}", args.log_format, args.log_level)
    asyncio.run(serve_office(cfg))
    return 0


def _gateway_serve(args: argparse.Namespace) -> int:
    from liaison.serve.gateway import serve_gateway

    cfg = load_gateway_config(Path(args.config))
    configure(f"gateway:{cfg.gateway}", args.log_format, args.log_level)
    asyncio.run(serve_gateway(cfg))
    return 0


def _serve_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], group: str, help_text: str
) -> None:
    parser = sub.add_parser(group, help=help_text)
    inner = parser.add_subparsers(dest=f"{group}_command", required=True, metavar="COMMAND")
    serve = inner.add_parser("serve", help=f"run the {group} node in the foreground")
    serve.add_argument("--config", required=True, help="node config file (TOML)")
    serve.add_argument("--log-format", choices=("json", "console"), default="json")
    serve.add_argument("--log-level", default="info")
    serve.set_defaults(handler=_office_serve if group == "office" else _gateway_serve)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    _serve_parser(sub, "office", "run an office node")
    _serve_parser(sub, "gateway", "run the embassy gateway node")
