"""The embassy gateway: the audit point every message between offices passes.

``decide`` is the pure decision (verify, policy, replay, the audit record);
``node`` its NATS shell (consume per sending office, audit, stamp, route);
``service`` the AuditService and DirectoryService servicers; ``client`` their
client; ``audit`` the Merkle log; ``witness`` the co-signing witness;
``console`` the operators' web console. Never imports ``exchange.office`` or
``keys`` (keys are opened by ``liaison.serve.gateway``).
"""

__all__ = ["audit", "client", "config", "console", "decide", "metrics", "node", "service", "witness"]
