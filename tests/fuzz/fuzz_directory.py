"""atheris harness: signed directory bytes through ``verify_directory``.

Odd first byte: an update checked against the trusted v1; even: a first
directory checked against the pinned anchor. Crashes on anything but
DirectoryError/CodecError, and on a directory that verifies with other
signed bytes than a seed's. Run: ``python tests/fuzz/fuzz_directory.py
-max_total_time=60``.
"""

from __future__ import annotations

from _harness import instrumented, run

with instrumented():
    from exchange.core.codec.directory import decode_signed_directory
    from exchange.core.directory import verify_directory
    from exchange.core.errors import CodecError, DirectoryError
    from tests.fuzz.corpus import build_corpus

CORPUS = build_corpus()
SIGNED_RAW = {decode_signed_directory(s)[0] for s in (CORPUS.signed_v1, CORPUS.signed_v2)}


def test_one_input(data: bytes) -> None:
    if not data:
        return
    update = bool(data[0] & 1)
    try:
        signed = verify_directory(
            data[1:], trusted=CORPUS.trusted if update else None, anchor=None if update else CORPUS.anchor
        )
    except (DirectoryError, CodecError):
        return
    assert signed.raw in SIGNED_RAW


if __name__ == "__main__":
    run(test_one_input, [b"\x00" + CORPUS.signed_v1, b"\x01" + CORPUS.signed_v2])
