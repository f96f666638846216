"""`liaison lab up` and `liaison demo`: the whole deployment on one machine."""

from __future__ import annotations

import argparse
import signal
import threading
import time
from pathlib import Path

from exchange.client.connection import LAB_JSON
from liaison.lab.lab import DEFAULT_INVENTORY, TOPOLOGIES

__all__ = ["register"]


def _lab_up(args: argparse.Namespace) -> int:
    from liaison.lab.lab import Lab

    lab = Lab(Path(args.dir), inventory=Path(args.inventory), suite=args.suite, topology=args.topology)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(f"starting the lab in {lab.root} ...", flush=True)
    lab.start()
    try:
        info = lab.describe()
        print(f"lab up: deployment {info['deployment']}, topology {lab.topology}, NATS {info['nats_url']}")
        cluster = info.get("nats_cluster")
        if cluster:
            for hub in cluster["hub"]:
                print(f"  hub     {hub['name']:22} NATS {hub['url']} (JetStream domain {cluster['domain']})")
        print(f"  gateway {info['gateway']['id']:22} gRPC {info['gateway']['grpc']}")
        for office in info["offices"]:
            leaf = f", leaf node {office['nats']['url']}" if cluster else ""
            print(f"  office  {office['id']:22} gRPC {office['grpc']}{leaf}")
        print(
            f"wrote {lab.root / LAB_JSON}; logs in {lab.root / 'logs'}; Ctrl-C stops everything", flush=True
        )
        while not stop.wait(1.0):
            for name, node in lab.nodes.items():
                if not node.running:
                    print(f"warning: {name} exited; see {node.log}", flush=True)
                    node.start()
                    time.sleep(1.0)
            for server in [*lab.hub_servers, *lab.leafs.values()]:
                if not server.running:
                    print(
                        f"warning: nats-server {server.server_name} exited; see {server.log_path}", flush=True
                    )
                    server.start()
    finally:
        print("stopping the lab ...", flush=True)
        lab.stop()
    return 0


def _demo(args: argparse.Namespace) -> int:
    from liaison.lab.demo import run_demo

    return run_demo(Path(args.dir) if args.dir else None)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    lab = sub.add_parser("lab", help="a complete local deployment")
    inner = lab.add_subparsers(dest="lab_command", required=True, metavar="COMMAND")
    up = inner.add_parser("up", help="start NATS, the gateway and every office in the foreground")
    up.add_argument("--dir", default="lab", help="lab folder (keys, configs, stores, lab.json)")
    up.add_argument("--inventory", default=str(DEFAULT_INVENTORY), help="deployment inventory (TOML)")
    up.add_argument("--suite", choices=("classic", "hybrid-pq"), default="classic")
    up.add_argument(
        "--topology",
        choices=TOPOLOGIES,
        default="single",
        help="single: one nats-server; cluster: three clustered hub servers and a leaf node per office",
    )
    up.set_defaults(handler=_lab_up)

    demo = sub.add_parser("demo", help="bring the lab up and play the main scenarios")
    demo.add_argument("--dir", default=None, help="keep the lab in this folder (default: a temporary one)")
    demo.set_defaults(handler=_demo)
