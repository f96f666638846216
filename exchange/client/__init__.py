"""The SDK for agency systems: a blocking ``Client`` and an ``AsyncClient`` for the ExchangeService.

``connection`` is the one reader of ``lab.json`` and client TLS files (the CLI
uses it too). Imports only ``exchange.core`` of ours and no server plumbing
(no NATS, SQLite, PostgreSQL or aiohttp), so it can run inside any agency system.
"""

from exchange.client.connection import ClientTls, lab_endpoint
from exchange.client.sdk import AsyncClient, Client, remote_error

__all__ = ["AsyncClient", "Client", "ClientTls", "lab_endpoint", "remote_error"]
