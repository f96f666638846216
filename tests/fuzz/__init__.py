"""Fuzzing support: shared strategies and seeds (``mutations``, ``corpus``).

Also the atheris harnesses ``fuzz_*.py``, run by hand (see ``_harness``).
"""
