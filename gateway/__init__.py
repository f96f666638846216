"""Liaison embassy gateway: verification, policy, audit log, routing."""
