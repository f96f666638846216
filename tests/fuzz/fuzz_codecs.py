"""atheris harness: every decoder of wire and disk bytes, chosen by the first input byte.

The decoders and their documented errors are the table of
``tests/unit/test_fuzz_parsers.py``: a decoder returns a value that
re-encodes to itself, or raises its documented error. Run:
``python tests/fuzz/fuzz_codecs.py -max_total_time=60``.
"""

from __future__ import annotations

from _harness import instrumented, run

with instrumented():
    from tests.fuzz.corpus import build_corpus
    from tests.unit.test_fuzz_parsers import DECODERS, check_decoder

NAMES = sorted(DECODERS)
CORPUS = build_corpus()


def test_one_input(data: bytes) -> None:
    if data:
        check_decoder(DECODERS[NAMES[data[0] % len(NAMES)]], data[1:])


if __name__ == "__main__":
    run(test_one_input, (bytes([i]) + s for i, name in enumerate(NAMES) for s in CORPUS.seeds[name]))
