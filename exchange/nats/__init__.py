"""The NATS JetStream shell: publishing, consuming, streams, attachment chunks and permissions.

It moves bytes; what they mean is the pure core's. Names and limits come from
``exchange.core.wire``. May import ``exchange.core`` only (docs/architecture.md).
"""

__all__ = ["attachments", "directory", "permissions", "retention", "tasks", "transport"]
