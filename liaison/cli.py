"""The `liaison` entry point: one parser, subcommands grouped by user.

Each subcommand module exposes ``register(subparsers)``; its handlers return
an exit code and raise ``LiaisonError`` for anything the user got wrong. This
module turns those errors into one line on stderr and exit code 2: no
traceback reaches the user.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from exchange.core.errors import LiaisonError
from liaison.terminal import echo

__all__ = ["main"]

# Subcommand modules, imported lazily so `liaison keys …` does not load gRPC or NATS.
_MODULES: tuple[str, ...] = (
    "liaison.commands.keys",
    "liaison.commands.directory",
    "liaison.commands.nodes",
    "liaison.commands.agency",
    "liaison.commands.lab",
    "liaison.commands.audit",
    "liaison.commands.witness",
    "liaison.commands.bench",
    "liaison.commands.deploy",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="liaison", description="Liaison secure message exchange")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:  # a command group not built yet
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except LiaisonError as e:
        echo(f"error: {e}", file=sys.stderr)  # a remote error may quote sender-controlled text
        return 2
    except KeyboardInterrupt:
        return 130
    except OSError as e:
        echo(f"error: {e.strerror or e} ({getattr(e, 'filename', '') or ''})".rstrip(" ()"), file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
