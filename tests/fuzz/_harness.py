"""Shared set-up of the atheris harnesses in this folder (not a test; pytest skips it).

Each ``fuzz_*.py`` harness is run by hand, with atheris installed next to
the project (it is not a project dependency):

    pip install atheris            # a manylinux wheel; no clang needed on x86-64
    python tests/fuzz/fuzz_envelope.py -atheris_runs=100000
    python tests/fuzz/fuzz_gateway.py -max_total_time=60

Any libFuzzer flag works (``-max_total_time``, ``-jobs``, ``-dict``...). With no
corpus folder on the command line, a temporary one is seeded with the valid
encodings of ``corpus.build_corpus`` (real sealed envelopes, statements,
signed directories); pass a folder to keep what the fuzzer finds. A crash is
an input that made a harness raise something other than the documented
LiaisonError, or broke one of its assertions; libFuzzer writes it to
``crash-<sha1>`` and the harness can replay it: ``python tests/fuzz/fuzz_x.py crash-...``.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

__all__ = ["ROOT", "instrumented", "run"]

# Coverage feedback comes from our packages; instrumenting everything loaded takes minutes.
INSTRUMENTED = ["exchange", "gateway", "keys", "tests.fuzz"]


def instrumented() -> Any:
    """A context manager: modules of our packages imported inside it report coverage to libFuzzer."""
    try:
        import atheris  # noqa: PLC0415 (only the harnesses need it)
    except ImportError:
        sys.exit("atheris is not installed: pip install atheris")
    return atheris.instrument_imports(include=INSTRUMENTED)


def run(test_one_input: Callable[[bytes], None], seeds: Iterable[bytes]) -> None:
    """Hand ``test_one_input`` to libFuzzer, with a seeded corpus folder unless one is given."""
    import atheris  # noqa: PLC0415 (only the harnesses need it)

    argv = list(sys.argv)
    if not any(not arg.startswith("-") for arg in argv[1:]):
        folder = Path(tempfile.mkdtemp(prefix="liaison-fuzz-"))
        for i, seed in enumerate(seeds):
            (folder / f"seed-{i}").write_bytes(seed)
        argv.append(str(folder))
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()
