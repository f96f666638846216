"""The `liaison` command line, the process wiring, the lab, deployment bundles and benchmarks.

``cli`` dispatches to ``commands``; ``serve`` wires config, keys, stores,
gRPC and NATS into running office, gateway and witness processes; ``lab``
runs a whole deployment on one machine (and the demo); ``bundles`` renders
and checks per-node deployment bundles; ``bench`` measures; ``natsserver``
finds and runs the ``nats-server`` binary; ``logs`` configures structlog.
"""

__all__ = ["bench", "bundles", "cli", "commands", "lab", "logs", "natsserver", "serve"]
