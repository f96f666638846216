"""The gateway's read-only web console for embassy operators.

Traffic metadata with filters, record details with their inclusion proof
(checked again in the browser), signed tree heads and witness cosignatures,
per-office-pair volumes and rejections, behind one credential per operator
(throttled, same-origin only, HTTPS off loopback).
It shows metadata only: the gateway holds no message content.
"""

from gateway.console.app import ConsoleHandle, start_console, start_console_from_config
from gateway.console.auth import Operators, load_operators, load_token

__all__ = [
    "ConsoleHandle",
    "Operators",
    "load_operators",
    "load_token",
    "start_console",
    "start_console_from_config",
]
