"""The witness: checks another gateway's tree heads for consistency and co-signs them.

``checks`` is pure (consistency of a new head with the last one, sampled
records against the signed root); ``runner`` polls the gateway, keeps the
witness's state file and raises alarms. Key opening and the process entry
are ``liaison.serve.witness``.
"""

__all__ = ["checks", "runner"]
