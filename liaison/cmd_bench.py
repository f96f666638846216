"""`liaison bench [crypto|exchange|audit|all]`: measured figures, a JSON report and a table.

Each benchmark measures its raw baselines in the same run (see the modules
it calls), so figures are comparable across machines as ratios.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from liaison.logs import configure

__all__ = ["register"]


def _crypto(args: argparse.Namespace) -> dict[str, Any]:
    from liaison.bench_crypto import format_table, run

    rows = run(args.seconds)
    print("crypto: seal / gateway verify / open per second (one core, pure core, no I/O)")
    print(format_table(rows))
    return {"rows": rows}


def _exchange(args: argparse.Namespace) -> dict[str, Any]:
    from liaison.bench_exchange import run_exchange

    results = []
    for concurrency in args.concurrency:
        result = run_exchange(count=args.count, concurrency=concurrency, body_size=args.body)
        results.append(result)
        e, b, r = result["exchange"], result["baseline"], result["ratios"]
        print(
            f"exchange: {e['messages']} x {e['body_bytes']} B, {concurrency} senders: "
            f"accepted {e['accept_rate']:.0f}/s, end-to-end {e['e2e_rate']:.0f}/s, "
            f"latency p50 {e['latency_ms_p50']:.0f} ms p99 {e['latency_ms_p99']:.0f} ms"
        )
        print(
            f"  baselines: grpc.aio echo {b['grpc_echo_calls_per_s']:.0f}/s, "
            f"nats pub->sub {b['core_pubsub_msgs_per_s']:.0f}/s, "
            f"JetStream pipelined {b['js_pipelined_msgs_per_s']:.0f}/s, "
            f"one at a time {b['js_sequential_msgs_per_s']:.0f}/s"
        )
        print(
            f"  ratios: {100 * r['e2e_vs_grpc_echo']:.1f}% of grpc echo, "
            f"{100 * r['e2e_vs_jetstream_pipelined']:.1f}% of JetStream pipelined"
        )
    return {"runs": results}


def _audit(args: argparse.Namespace) -> dict[str, Any]:
    from gateway.audit.bench import run

    result = run(args.audit_entries)
    print(f"audit log ({args.audit_entries:,} entries, SQLite):")
    for key, value in result.items():
        print(f"  {key}: {value}")
    return result


def _bench(args: argparse.Namespace) -> int:
    configure("bench", "console", "error")
    which = ("crypto", "exchange", "audit") if args.which == "all" else (args.which,)
    report: dict[str, Any] = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    for name in which:
        report[name] = {"crypto": _crypto, "exchange": _exchange, "audit": _audit}[name](args)
        print()
    out = Path(args.out)
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"report written to {out}")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("bench", help="benchmarks with same-run baselines")
    p.add_argument("which", nargs="?", choices=("crypto", "exchange", "audit", "all"), default="all")
    p.add_argument("--out", default="bench-report.json", help="JSON report path")
    p.add_argument("--seconds", type=float, default=1.0, help="crypto: seconds per case")
    p.add_argument("--count", type=int, default=2000, help="exchange: messages per run")
    p.add_argument("--concurrency", type=int, nargs="+", default=[64], help="exchange: concurrent senders")
    p.add_argument("--body", type=int, default=1024, help="exchange: body bytes")
    p.add_argument("--audit-entries", type=int, default=100_000, help="audit: log size to build")
    p.set_defaults(handler=_bench)
