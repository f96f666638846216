"""Deployment bundles: one folder per node rendered from an inventory, and the on-host check.

``render`` writes configs, certificates, nats-server configs and systemd units;
``nats`` renders the nats-server configs (also used by the cluster lab);
``docs`` each bundle's README; ``check`` validates a bundle on its host.
"""

__all__ = ["check", "docs", "nats", "render"]
