"""The codec: the only code that touches generated protobuf classes.

Each submodule converts one part of the wire contract to and from the domain
types in ``exchange.core.model``; every decoder checks its named size limit before
parsing and maps protobuf errors to ``CodecError``.
"""

__all__ = ["attachment", "body", "directory", "envelope", "health", "service"]
