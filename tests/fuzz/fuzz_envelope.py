"""atheris harness: envelope bytes through decode, verify (gateway) and open (recipient).

Crashes on anything but CodecError/EnvelopeError, on a mutated envelope that
verifies with other signed header or ciphertext bytes than a seed's, and on
one that opens to another body. Run: ``python tests/fuzz/fuzz_envelope.py
-max_total_time=60`` (see ``_harness.py``).
"""

from __future__ import annotations

import contextlib

from _harness import instrumented, run

with instrumented():
    from exchange.core.codec.envelope import decode_envelope, encode_envelope
    from exchange.core.errors import CodecError, EnvelopeError
    from exchange.core.seal import open_envelope, verify_envelope
    from tests.fuzz.corpus import NOW_MS, RECIPIENTS, build_corpus

CORPUS = build_corpus()
ORIGINALS = {e.header_bytes: (e, CORPUS.bodies[label]) for label, e in CORPUS.envelopes.items()}
ME = RECIPIENTS[0]


def test_one_input(data: bytes) -> None:
    with contextlib.suppress(CodecError):
        decode_envelope(data)
    try:
        verified = verify_envelope(data, directory=CORPUS.directory, now_ms=NOW_MS)
    except (CodecError, EnvelopeError):
        return
    original, body = ORIGINALS[verified.envelope.header_bytes]
    assert verified.envelope.ciphertext == original.ciphertext
    try:
        opened = open_envelope(
            data, me=ME, my_keys=CORPUS.offices[ME].encryption, directory=CORPUS.directory, now_ms=NOW_MS
        )
    except (CodecError, EnvelopeError):
        return
    assert opened.body == body


if __name__ == "__main__":
    run(test_one_input, (encode_envelope(e) for e in CORPUS.envelopes.values()))
