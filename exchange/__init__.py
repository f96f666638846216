"""Liaison office node and the shared envelope core.

The pure core (``model``, ``codec``, ``seal``, ``directory``) takes bytes and an
injected clock and does no I/O; the shells (node, service, transport, client)
move those bytes over gRPC, NATS and SQLite.
"""

__all__: list[str] = []
