"""Days to expiry of an identity's keys and of TLS certificates.

What it does: ``expiry_report`` lists, for each algorithm, the key in use
(the newest ACTIVE key; older and retiring keys are superseded, so their end
is expected and not reported) and each given certificate with the whole days
it has left (negative once expired), soonest first; ``days_to_expiry`` is
the certificate part (also ``keys.pki``'s). ``ExpiryItem.warn`` is
True from ``WARN_DAYS`` (30) days before the end. Node health and metrics
call the same function.

What it does not: no I/O (callers read keystores and PEM files), no clock
(``now_ms`` is passed in), no decision to stop serving.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from cryptography import x509

from exchange.core import model
from exchange.core.errors import ConfigError
from exchange.core.identity import OfficeIdentity

__all__ = ["CERTIFICATE", "KEY", "WARN_DAYS", "ExpiryItem", "days_to_expiry", "expiry_report"]

WARN_DAYS: Final = 30
KEY: Final = "key"
CERTIFICATE: Final = "certificate"
_DAY_MS: Final = 86_400_000


@dataclass(frozen=True)
class ExpiryItem:
    """One key (name ``<algorithm> <key id>``) or certificate (name as given) and its days left."""

    name: str
    kind: str  # KEY or CERTIFICATE
    days_left: int  # whole days, rounded down; negative once expired

    def warn(self, warn_days: int = WARN_DAYS) -> bool:
        return self.days_left <= warn_days

    def describe(self) -> str:
        if self.days_left < 0:
            return f"{self.kind} {self.name} expired {-self.days_left} day(s) ago"
        return f"{self.kind} {self.name} expires in {self.days_left} day(s)"


def days_to_expiry(cert_pem: bytes, now: dt.datetime) -> int:
    """Whole days from ``now`` until the certificate expires (negative once expired)."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as e:  # its text is cryptography's long advice, not ours
        raise ConfigError("certificate is not a PEM certificate") from e
    return (cert.not_valid_after_utc - now).days


def _label(algorithm: model.Algorithm) -> str:
    return algorithm.name.lower().replace("_", "-")


def _keys_in_use(keys: OfficeIdentity | Iterable[model.PublicKey]) -> list[model.PublicKey]:
    public = keys.public_keys() if isinstance(keys, OfficeIdentity) else tuple(keys)
    newest: dict[model.Algorithm, model.PublicKey] = {}
    for k in public:
        if k.status is not model.KeyStatus.ACTIVE:
            continue
        seen = newest.get(k.algorithm)
        if seen is None or k.not_before_ms > seen.not_before_ms:
            newest[k.algorithm] = k
    return [newest[a] for a in model.Algorithm if a in newest]


def expiry_report(
    keys: OfficeIdentity | Iterable[model.PublicKey],
    cert_pems: Mapping[str, bytes],
    now_ms: int,
) -> list[ExpiryItem]:
    """Keys in use and certificates with their days left, soonest first.

    ``keys`` is an identity or public keys (from ``keystore.read_public`` or a
    directory entry); keys without an end (``not_after_ms == 0``) are left out.
    ``cert_pems`` maps a name (e.g. the file name) to PEM bytes; a malformed
    certificate raises ConfigError naming it.
    """
    items = [
        ExpiryItem(
            f"{_label(k.algorithm)} {k.key_id}",
            KEY,
            (k.not_after_ms - now_ms) // _DAY_MS,
        )
        for k in _keys_in_use(keys)
        if k.not_after_ms
    ]
    now = dt.datetime.fromtimestamp(now_ms / 1000, dt.UTC)
    for name, pem in cert_pems.items():
        try:
            items.append(ExpiryItem(name, CERTIFICATE, days_to_expiry(pem, now)))
        except ConfigError as e:
            raise ConfigError(f"{name}: {e}") from e
    return sorted(items, key=lambda i: (i.days_left, i.kind, i.name))
