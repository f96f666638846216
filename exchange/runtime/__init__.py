"""Plumbing every node process shares: configuration sections, gRPC servers, SQLite, health, metrics.

``config`` reads the TOML sections all nodes have; ``grpcutil`` builds mutual-TLS
gRPC servers and maps project errors to status codes; ``sqlite`` is the one
SQLite connection (WAL verified) and the group-commit writer; ``health``,
``metrics`` and ``lifecycle`` watch and run a node. No node logic here. May
import ``exchange.core`` and ``exchange.nats``.
"""

__all__ = ["config", "grpcutil", "health", "lifecycle", "metrics", "sqlite"]
