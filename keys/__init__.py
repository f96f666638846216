"""Key management: encrypted keystores, rotation, the deployment PKI, directory files, inventories.

Builds on ``exchange.core`` only; nothing in ``exchange`` or ``gateway`` imports
it (processes get opened keys from ``liaison.serve``).
"""

__all__ = ["deployment", "deployment_pki", "directory_file", "inventory", "keystore", "pki", "rotation"]
