"""A whole deployment on one machine: keys, PKI, nats-server(s), gateway, offices, witness; and the demo.

``lab`` starts and supervises the processes and writes ``lab.json``;
``cluster`` the real-site NATS topology (three hub servers, a leaf per
office); ``demo`` is what ``make demo`` runs.
"""

__all__ = ["cluster", "demo", "lab"]
