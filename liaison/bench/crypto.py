"""Micro-benchmark of the envelope core: seal, gateway verify and open per second.

Measures both suites x body sizes (1 KiB, 64 KiB) x recipient counts (1, 3)
with in-memory keys and directory. It does no I/O beyond the clock and
measures only the pure core (no NATS, gRPC or storage).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from exchange.core import primitives
from exchange.core.codec.envelope import encode_envelope
from exchange.core.model import Algorithm, CaseMessage, Directory, Kind, Office, PolicyRule, PublicKey, Suite
from exchange.core.seal import open_envelope, seal, verify_envelope

__all__ = ["format_table", "run"]

_OFFICES = ("bench-sender", "bench-r1", "bench-r2", "bench-r3")
_NOW_MS = 1_760_000_000_000


def _setup() -> tuple[Directory, dict[str, dict[Algorithm, primitives.PrivateKey]]]:
    keys = {oid: {a: primitives.generate(a) for a in Algorithm} for oid in _OFFICES}

    def pub(k: primitives.PrivateKey) -> PublicKey:
        raw = primitives.public_bytes(k)
        return PublicKey(primitives.key_id(k.algorithm, raw), k.algorithm, raw)

    directory = Directory(
        deployment="bench",
        version=1,
        issued_ms=_NOW_MS,
        offices=tuple(Office(oid, tuple(pub(k) for k in ks.values())) for oid, ks in keys.items()),
        gateways=(),
        authorities=(),
        threshold=1,
        policy=(PolicyRule("*", frozenset(Kind), frozenset({"*"})),),
    )
    return directory, keys


def _rate(fn: Callable[[], object], seconds: float) -> float:
    fn()  # warm up
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        fn()
        count += 1
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - start)


def _case(
    directory: Directory,
    keys: dict[str, dict[Algorithm, primitives.PrivateKey]],
    *,
    suite: Suite,
    body_size: int,
    n: int,
    seconds: float,
) -> dict[str, object]:
    sender, recipients = _OFFICES[0], _OFFICES[1 : 1 + n]
    me = recipients[0]
    signing = [k for a, k in keys[sender].items() if a.is_signing]
    my_keys = {
        primitives.key_id(k.algorithm, primitives.public_bytes(k)): k
        for a, k in keys[me].items()
        if not a.is_signing
    }
    body = CaseMessage(case_id="bench", text="x" * body_size)

    def do_seal() -> bytes:
        envelope = seal(
            body,
            sender=sender,
            sender_keys=signing,
            recipients=recipients,
            directory=directory,
            suite=suite,
            now_ms=_NOW_MS,
            ttl_s=3600,
        )
        return encode_envelope(envelope)

    wire = do_seal()

    def do_verify() -> object:
        return verify_envelope(wire, directory=directory, now_ms=_NOW_MS)

    def do_open() -> object:
        return open_envelope(wire, me=me, my_keys=my_keys, directory=directory, now_ms=_NOW_MS)

    return {
        "suite": suite.label,
        "body_bytes": body_size,
        "recipients": n,
        "envelope_bytes": len(wire),
        "seal_per_s": _rate(do_seal, seconds),
        "verify_per_s": _rate(do_verify, seconds),
        "open_per_s": _rate(do_open, seconds),
    }


def run(seconds_per_case: float = 1.0) -> list[dict[str, object]]:
    """One row per case: suite, body bytes, recipients, envelope bytes, seal/s, verify/s (gateway), open/s."""
    directory, keys = _setup()
    return [
        _case(directory, keys, suite=suite, body_size=body_size, n=n, seconds=seconds_per_case)
        for suite in Suite
        for body_size in (1024, 64 * 1024)
        for n in (1, 3)
    ]


def format_table(rows: list[dict[str, object]]) -> str:
    """A plain-text table of ``run()`` rows."""
    columns = (
        "suite",
        "body_bytes",
        "recipients",
        "envelope_bytes",
        "seal_per_s",
        "verify_per_s",
        "open_per_s",
    )

    def cell(value: object) -> str:
        return f"{value:,.0f}" if isinstance(value, float) else str(value)

    cells = [[cell(row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)
