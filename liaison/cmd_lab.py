"""`liaison lab up` and `liaison demo`: the whole deployment on one machine."""

from __future__ import annotations

import argparse
import signal
import threading
import time
from pathlib import Path

from liaison.lab import DEFAULT_INVENTORY

__all__ = ["register"]


def _lab_up(args: argparse.Namespace) -> int:
    from liaison.lab import Lab

    lab = Lab(Path(args.dir), inventory=Path(args.inventory), suite=args.suite)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(f"starting the lab in {lab.root} ...", flush=True)
    lab.start()
    try:
        info = lab.describe()
        print(f"lab up: deployment {info['deployment']}, NATS {info['nats_url']}")
        print(f"  gateway {info['gateway']['id']:22} gRPC {info['gateway']['grpc']}")
        for office in info["offices"]:
            print(f"  office  {office['id']:22} gRPC {office['grpc']}")
        print(
            f"wrote {lab.root / 'lab.json'}; logs in {lab.root / 'logs'}; Ctrl-C stops everything", flush=True
        )
        while not stop.wait(1.0):
            for name, node in lab.nodes.items():
                if not node.running:
                    print(f"warning: {name} exited; see {node.log}", flush=True)
                    node.start()
                    time.sleep(1.0)
    finally:
        print("stopping the lab ...", flush=True)
        lab.stop()
    return 0


def _demo(args: argparse.Namespace) -> int:
    from liaison.demo import run_demo

    return run_demo(Path(args.dir) if args.dir else None)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    lab = sub.add_parser("lab", help="a complete local deployment")
    inner = lab.add_subparsers(dest="lab_command", required=True, metavar="COMMAND")
    up = inner.add_parser("up", help="start NATS, the gateway and every office in the foreground")
    up.add_argument("--dir", default="lab", help="lab folder (keys, configs, stores, lab.json)")
    up.add_argument("--inventory", default=str(DEFAULT_INVENTORY), help="deployment inventory (TOML)")
    up.add_argument("--suite", choices=("classic", "hybrid-pq"), default="classic")
    up.set_defaults(handler=_lab_up)

    demo = sub.add_parser("demo", help="bring the lab up and play the main scenarios")
    demo.add_argument("--dir", default=None, help="keep the lab in this folder (default: a temporary one)")
    demo.set_defaults(handler=_demo)
