"""Live gRPC health of a node, and warnings before its keys or certificates expire.

What it does: ``HealthReport`` is the verdict of one round of checks (NATS
connected, a directory applied that names this node, a cheap store read that
worked); ``watch_health`` runs such a round every few seconds once the node
is ready and sets SERVING or NOT_SERVING on the overall service ("") and on
each of the node's services, logging each change with the failing checks.
``node_expiry`` reads the node's TLS certificate files and, with the
keystore identity, lists days to expiry (``exchange.core.expiry.expiry_report``);
``log_expiry`` warns (``expiry_warning``) from 30 days before any end.

What it does not: it decides nothing about keys (no rotation) and never
stops the node; a failing check only changes what health checks answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import structlog

from exchange.core import clock
from exchange.core.codec.health import serving_status
from exchange.core.directory import DirectoryState
from exchange.core.errors import ConfigError
from exchange.core.expiry import WARN_DAYS, ExpiryItem, expiry_report
from exchange.core.identity import OfficeIdentity
from exchange.nats.transport import Transport

__all__ = [
    "HEALTH_INTERVAL_S",
    "HealthReport",
    "Prober",
    "log_expiry",
    "node_expiry",
    "probe",
    "watch_health",
]

log = structlog.get_logger()

HEALTH_INTERVAL_S: Final = 1.0
# A store read slower than this counts as a failed check (a wedged disk or database).
STORE_CHECK_TIMEOUT_S: Final = 5.0


@dataclass(frozen=True)
class HealthReport:
    """One round of checks; the node serves only when all pass."""

    nats: bool
    directory: bool
    store: bool
    # Detail: the directory in force and seconds since it was issued (a node frozen on an
    # old version shows in its log and metrics even while it serves).
    directory_version: int = 0
    directory_age_s: float = 0.0

    @property
    def serving(self) -> bool:
        return self.nats and self.directory and self.store

    def problems(self) -> list[str]:
        names = (("nats", self.nats), ("directory", self.directory), ("store", self.store))
        return [name for name, ok in names if not ok]


Prober = Callable[[], Awaitable[HealthReport]]


async def probe(
    transport: Transport, directory: DirectoryState, node_id: str, store_read: Callable[[], Any]
) -> HealthReport:
    """Check NATS, the directory (applied, naming ``node_id``) and the store (``store_read``, in a thread)."""
    current = directory.current
    listed = current is not None and (
        current.directory.office(node_id) is not None or current.directory.gateway(node_id) is not None
    )
    try:
        await asyncio.wait_for(asyncio.to_thread(store_read), timeout=STORE_CHECK_TIMEOUT_S)
        store_ok = True
    except Exception as e:  # noqa: BLE001 - any failure of the read is the verdict, not a crash
        log.debug("store_check_failed", error_type=type(e).__name__)  # the report says it
        store_ok = False
    version = current.directory.version if current is not None else 0
    age_s = max(0, clock.now_ms() - current.directory.issued_ms) / 1000 if current is not None else 0.0
    return HealthReport(
        nats=transport.is_connected,
        directory=listed,
        store=store_ok,
        directory_version=version,
        directory_age_s=age_s,
    )


def _set(servicer: Any, services: Sequence[str], serving: bool) -> None:
    status = serving_status(serving)
    for name in (*services, ""):
        servicer.set(name, status)


async def watch_health(
    servicer: Any,
    services: Sequence[str],
    prober: Prober,
    *,
    ready: asyncio.Event,
    interval: float = HEALTH_INTERVAL_S,
    on_report: Callable[[HealthReport], None] | None = None,
) -> None:
    """Once ``ready``, set the health of ``services`` and "" from ``prober`` every ``interval`` s."""
    await ready.wait()
    last: bool | None = None
    last_version = -1
    while True:
        try:
            report = await prober()
        except Exception as e:  # noqa: BLE001 - a broken check means not serving, never a dead node
            log.warning("health_check_failed", error_type=type(e).__name__)
            report = HealthReport(nats=False, directory=False, store=False)
        _set(servicer, services, report.serving)
        if on_report is not None:
            on_report(report)
        directory = {"directory_version": report.directory_version, "directory_age_s": report.directory_age_s}
        if report.serving != last:
            if report.serving:
                log.info("health_serving", **directory)
            else:
                log.warning("health_not_serving", failing=report.problems(), **directory)
            last = report.serving
        elif report.directory_version != last_version:
            log.info("health_directory", **directory)
        last_version = report.directory_version
        await asyncio.sleep(interval)


def node_expiry(
    identity: OfficeIdentity, cert_files: Mapping[str, Path | None], now_ms: int | None = None
) -> list[ExpiryItem]:
    """Days to expiry of the identity's keys in use and of each named certificate file that is set.

    A certificate file that cannot be read is left out (and logged): its absence
    shows in the metrics, and the node keeps running.
    """
    now = now_ms if now_ms is not None else clock.now_ms()
    items = expiry_report(identity, {}, now)
    for name, path in cert_files.items():
        if path is None:
            continue
        try:
            items += expiry_report((), {name: path.read_bytes()}, now)
        except OSError as e:
            log.warning("certificate_unreadable", certificate=name, error=e.strerror)
        except ConfigError as e:
            log.warning("certificate_unparsable", certificate=name, error=str(e)[:300])
    return sorted(items, key=lambda i: (i.days_left, i.kind, i.name))


def log_expiry(items: Sequence[ExpiryItem], warn_days: int = WARN_DAYS) -> list[ExpiryItem]:
    """Log ``expiry_warning`` for each item within ``warn_days`` of its end; returns those items."""
    due = [i for i in items if i.warn(warn_days)]
    for item in due:
        log.warning("expiry_warning", kind=item.kind, name=item.name, days_left=item.days_left)
    return due
