"""The office node, the SDK and the core every Liaison process shares.

``core`` is pure (bytes and an injected clock in, values or a precise error
out; the codec inside it is the only user of generated protobuf classes);
``nats`` and ``runtime`` are thin I/O shells over NATS, gRPC and SQLite;
``office`` is the office node built on them; ``client`` is the SDK for agency
systems and imports no server plumbing. docs/architecture.md states what each
may import, and tests/unit/test_architecture.py keeps it so.
"""

__all__ = ["client", "core", "nats", "office", "runtime"]
