"""Benchmarks behind `liaison bench`: crypto, exchange (and its series), audit stores, attachments.

Each measures its raw baselines in the same run (gRPC echo, NATS publish →
subscribe, JetStream publish) and reports ratios to them.
"""

__all__ = ["attachments", "audit", "crypto", "exchange", "nats", "series"]
