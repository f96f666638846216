"""The subcommands of `liaison`: argument parsing, I/O and printing; the work is in the packages below.

Each module adds its parser group and imports its node lazily so that
``liaison keys …`` starts fast.
"""

__all__ = [
    "agency",
    "audit",
    "audit_format",
    "bench",
    "bench_series",
    "deploy",
    "directory",
    "keys",
    "lab",
    "nodes",
    "nodestatus",
    "witness",
]
