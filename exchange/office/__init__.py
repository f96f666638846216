"""The office node: the ExchangeService for agency systems, its SQLite store and its NATS loops.

``node`` seals outbound messages into the store's out-queue and publishes them,
checks and opens inbound ones, and keeps receipts; ``service`` is the gRPC
servicer (roles from client certificates); ``store`` the office's SQLite
store; ``attachments`` streamed uploads and downloads; ``config`` and
``metrics`` the node's settings and counters (the process wiring that builds
them is ``liaison.serve.office``). May import ``exchange.core``,
``exchange.nats`` and ``exchange.runtime``.
"""

__all__ = ["attachments", "config", "metrics", "node", "service", "store"]
