"""The pure core: domain types, cryptography, envelope, directory, receipts, wire names, codec.

Nothing here does I/O or awaits: functions take bytes, values and a clock and
return values or raise one precise ``exchange.core.errors.LiaisonError``.
``primitives`` is the only module that imports ``cryptography.hazmat``; the
``codec`` subpackage is the only user of generated protobuf message classes.
Imports nothing of ours outside ``exchange.core`` (and the generated code).
"""

__all__ = [
    "api",
    "attachments",
    "clock",
    "codec",
    "directory",
    "envelope",
    "errors",
    "expiry",
    "identity",
    "ids",
    "model",
    "primitives",
    "receipts",
    "seal",
    "wire",
]
