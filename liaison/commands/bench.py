"""`liaison bench [crypto|exchange|audit|attachments|poison|all]`: figures, a JSON report and a table.

Each benchmark measures its raw baselines in the same run (see the modules
it calls), so figures are comparable across machines as ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from liaison.commands.bench_series import add_arguments as add_series_arguments
from liaison.logs import configure

__all__ = ["register"]


def _crypto(args: argparse.Namespace) -> dict[str, Any]:
    from liaison.bench.crypto import format_table, run

    rows = run(args.seconds)
    print("crypto: seal / gateway verify / open per second (one core, pure core, no I/O)")
    print(format_table(rows))
    return {"rows": rows}


def _exchange(args: argparse.Namespace) -> dict[str, Any]:
    if args.series:
        from liaison.commands.bench_series import run_cli

        return run_cli(args)
    from liaison.bench.exchange import run_exchange

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
    from liaison.bench.audit import format_table, run_audit_bench, table_row

    dsn = args.pg_dsn or os.environ.get("LIAISON_TEST_PG_DSN") or None
    if "postgres" in args.stores and not dsn:
        print("audit: PostgreSQL leg skipped: no DSN (pass --pg-dsn or set LIAISON_TEST_PG_DSN)")
    sizes = ", ".join(f"{n:,}" for n in args.audit_sizes)
    print(f"audit log: one log per store grown through {sizes} entries, batches of {args.audit_batch:,}")

    def progress(name: str, row: dict[str, Any]) -> None:
        print("  done: " + "  ".join(table_row(name, row)), flush=True)

    report = run_audit_bench(
        args.audit_sizes,
        args.stores,
        pg_dsn=dsn,
        batch=args.audit_batch,
        samples=args.audit_samples,
        progress=progress,
    )
    print(f"audit: append rate in entries/s; latencies in ms over {args.audit_samples} samples")
    print(format_table(report))
    return report


def _attachments(args: argparse.Namespace) -> dict[str, Any]:
    from liaison.bench.attachments import format_table, run_attachments

    runs = run_attachments()
    print("attachments: upload -> send -> delivery -> download through a lab; peak RSS per node process")
    print(format_table(runs))
    return {"runs": runs}


def _poison(args: argparse.Namespace) -> dict[str, Any]:
    from liaison.bench.poison import run_poison

    inventory = Path(args.inventory) if args.inventory else None
    result = run_poison(count=args.count, rate=args.rate, inventory=inventory)
    for phase in ("before", "flood", "after"):
        r = result[phase]
        print(
            f"poison {phase:6}: {r['messages']} honest messages, "
            f"latency p50 {r['latency_ms_p50']:.1f} ms p99 {r['latency_ms_p99']:.1f} ms"
        )
    f = result["flood"]
    print(
        f"  flood: {f['poison_frames_published']} poison frames ({f['poison_frames_per_s']:.0f}/s), "
        f"{f['poison_frames_audited_as_rejected']} audited as rejected, "
        f"backlog drained {f['backlog_drained_s_after_flood']:.1f} s after the flood"
    )
    return result


def _bench(args: argparse.Namespace) -> int:
    configure("bench", "console", "error")
    which = ("crypto", "exchange", "audit") if args.which == "all" else (args.which,)
    report: dict[str, Any] = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    for name in which:
        runners = {
            "crypto": _crypto,
            "exchange": _exchange,
            "audit": _audit,
            "attachments": _attachments,
            "poison": _poison,
        }
        report[name] = runners[name](args)
        print()
    out = Path(args.out)
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"report written to {out}")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("bench", help="benchmarks with same-run baselines")
    choices = ("crypto", "exchange", "audit", "attachments", "poison", "all")
    p.add_argument("which", nargs="?", choices=choices, default="all")
    p.add_argument("--out", default="bench-report.json", help="JSON report path")
    p.add_argument("--seconds", type=float, default=1.0, help="crypto: seconds per case")
    p.add_argument("--count", type=int, default=2000, help="exchange: messages per run")
    p.add_argument("--concurrency", type=int, nargs="+", default=[64], help="exchange: concurrent senders")
    p.add_argument("--body", type=int, default=1024, help="exchange: body bytes")
    p.add_argument("--rate", type=float, default=20.0, help="poison: honest messages per second")
    p.add_argument("--inventory", default=None, help="poison: lab inventory (default: the built-in lab)")
    add_series_arguments(p)
    p.add_argument(
        "--audit-sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000],
        help="audit: log sizes, increasing; one log per store grows through them",
    )  # fmt: skip
    p.add_argument(
        "--stores", nargs="+", choices=("sqlite", "postgres"), default=["sqlite", "postgres"],
        help="audit: stores to measure",
    )  # fmt: skip
    p.add_argument("--pg-dsn", default=None, help="audit: PostgreSQL DSN (default: $LIAISON_TEST_PG_DSN)")
    p.add_argument("--audit-batch", type=int, default=10_000, help="audit: entries per append")
    p.add_argument("--audit-samples", type=int, default=1000, help="audit: proofs timed per kind and size")
    p.set_defaults(handler=_bench)
