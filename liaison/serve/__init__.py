"""Process wiring: config, keys, stores, metrics, gRPC and NATS put together into a running node.

The only place where keystores are opened for a node and metrics objects are
built; the nodes receive both.
"""

__all__ = ["gateway", "office", "witness"]
