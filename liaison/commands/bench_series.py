"""The options and printing of `liaison bench exchange --series` (the work is in ``bench_series``).

Kept apart so that building the CLI parser does not import the lab, gRPC and
NATS clients: ``bench_series`` is imported only when the series runs.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

__all__ = ["add_arguments", "parse_size", "run_cli"]


def parse_size(text: str) -> int:
    """``1024``, ``64KiB``, ``1MiB`` (also ``k``/``m``/``b`` suffixes) → bytes."""
    units = {"kib": 1 << 10, "k": 1 << 10, "mib": 1 << 20, "m": 1 << 20, "b": 1}
    lowered = text.strip().lower()
    for suffix, factor in units.items():
        number = lowered[: -len(suffix)].strip()
        if lowered.endswith(suffix) and number.isdigit():
            return int(number) * factor
    if lowered.isdigit():
        return int(lowered)
    raise argparse.ArgumentTypeError(f"not a size: {text!r} (use e.g. 1024, 64KiB, 1MiB)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The series options of `liaison bench`; None means the series default."""
    p.add_argument(
        "--series", action="store_true", help="exchange: run the offices x senders x payload series"
    )
    p.add_argument("--offices", type=int, nargs="+", help="series: sending offices (default 1 2 4)")
    p.add_argument("--senders", type=int, nargs="+", help="series: concurrent senders (default 1 16 64)")
    p.add_argument(
        "--payloads", type=parse_size, nargs="+", help="series: body sizes (default 1KiB 64KiB 1MiB)"
    )
    p.add_argument("--point-seconds", type=float, help="series: sending time per point (default 4)")
    p.add_argument(
        "--point-messages", type=int,
        help="series: message cap per point (default 4000; also at most 192 MiB of bodies)",
    )  # fmt: skip
    p.add_argument("--warmup", type=int, help="series: warm-up messages before each point (default 8)")
    p.add_argument(
        "--baseline-messages", type=int, help="series: cap per baseline measurement (default 5000)"
    )
    p.add_argument("--keep-labs", type=Path, help="series: keep each lab (logs, stores) in this new folder")


def run_cli(args: argparse.Namespace) -> dict[str, Any]:
    """Run the series from parsed arguments, printing progress and the table."""
    from liaison.bench.series import (
        OFFICES,
        PAYLOADS,
        SENDERS,
        SeriesBudget,
        format_series_table,
        run_series,
        size_label,
    )

    chosen = {
        "seconds": args.point_seconds,
        "max_messages": args.point_messages,
        "warmup": args.warmup,
        "baseline_max_messages": args.baseline_messages,
    }
    budget = SeriesBudget(**{k: v for k, v in chosen.items() if v is not None})
    offices = args.offices or list(OFFICES)
    senders = args.senders or list(SENDERS)
    payloads = args.payloads or list(PAYLOADS)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"exchange series: offices {offices} x senders {senders} x payloads "
        f"{[size_label(p) for p in payloads]} on {os.cpu_count()} cores, load average {load}",
        flush=True,
    )

    def progress(p: dict[str, Any]) -> None:
        print(
            f"  done: {p['offices']} offices, {p['senders']} senders, {size_label(p['payload_bytes'])}: "
            f"{p['delivered']} delivered, {p['delivered_per_s']:.1f}/s",
            flush=True,
        )

    report = run_series(
        offices, senders, payloads, budget=budget, progress=progress, keep_labs=args.keep_labs
    )
    print(format_series_table(report))
    print(f"series took {report['seconds']:.0f} s")
    return {"series": report}
