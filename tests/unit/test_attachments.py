"""Attachment chunk sealing: round trip, and every way a chunk stream can be altered."""

from __future__ import annotations

import dataclasses

import pytest

from exchange.core import errors
from exchange.core.attachments import CHUNK_BYTES, ChunkOpener, ChunkSealer, sealed_size_of
from exchange.core.codec.body import decode_body, encode_body
from exchange.core.model import Attachment, AttachmentManifest, CaseMessage, Directory, Suite
from exchange.core.seal import open_envelope, seal
from tests.unit.conftest import NOW_MS

OWNER = "ru-office"


def sealed_chunks(data: bytes, pieces: int = 7) -> tuple[list[bytes], AttachmentManifest]:
    sealer = ChunkSealer(OWNER)
    chunks: list[bytes] = []
    step = max(1, len(data) // pieces)
    for start in range(0, len(data), step):
        chunks += [c for _, c in sealer.push(data[start : start + step])]
    (_, last), done = sealer.finish()
    return [*chunks, last], done.manifest


def open_all(chunks: list[bytes], manifest: AttachmentManifest, order: list[int] | None = None) -> bytes:
    opener = ChunkOpener(manifest)
    out = b"".join(opener.open(i, chunks[j]) for i, j in enumerate(order or range(len(chunks))))
    opener.finish()
    return out


DATA = bytes(range(256)) * (CHUNK_BYTES * 3 // 256 + 100)  # 3 full chunks and a short one


@pytest.mark.parametrize("size", [0, 1, CHUNK_BYTES - 1, CHUNK_BYTES, CHUNK_BYTES + 1, 2 * CHUNK_BYTES])
def test_round_trip_at_chunk_boundaries(size: int) -> None:
    data = DATA[:size]
    chunks, manifest = sealed_chunks(data)
    assert manifest.chunk_count == max(1, -(-size // CHUNK_BYTES)) == len(chunks)
    assert manifest.size == size
    assert sum(map(len, chunks)) == sealed_size_of(manifest)
    assert open_all(chunks, manifest) == data


def test_each_attachment_has_its_own_id_and_key() -> None:
    _, a = sealed_chunks(b"same")
    _, b = sealed_chunks(b"same")
    assert a.id != b.id
    assert a.key != b.key
    assert a.root != b.root


def _flip(chunks: list[bytes], i: int) -> list[bytes]:
    c = bytearray(chunks[i])
    c[len(c) // 2] ^= 1
    return [*chunks[:i], bytes(c), *chunks[i + 1 :]]


TAMPER = [
    pytest.param(lambda c, m: (_flip(c, 1), m), "does not authenticate", id="flipped-bit"),
    pytest.param(lambda c, m: ([c[1], c[0], *c[2:]], m), "does not authenticate", id="reordered"),
    pytest.param(lambda c, m: ([c[0], *c[2:]], m), "does not authenticate", id="dropped-middle"),
    pytest.param(lambda c, m: (c[:-1], m), "chunks opened", id="truncated-count-kept"),
    pytest.param(
        lambda c, m: (
            c[:-1],
            dataclasses.replace(m, chunk_count=len(c) - 1, size=(len(c) - 1) * CHUNK_BYTES),
        ),
        "does not authenticate",
        id="truncated-manifest-too",
    ),
    pytest.param(
        lambda c, m: (c, dataclasses.replace(m, key=bytes(32))), "does not authenticate", id="wrong-key"
    ),
    pytest.param(lambda c, m: ([*c[:-1], c[-1][:-1]], m), "does not authenticate", id="cut-last-chunk"),
    pytest.param(lambda c, m: (c, dataclasses.replace(m, root=bytes(32))), "chunk root", id="wrong-root"),
    pytest.param(lambda c, m: (c, dataclasses.replace(m, sha256=bytes(32))), "SHA-256", id="wrong-sha256"),
]


@pytest.mark.parametrize(("tamper", "message"), TAMPER)
def test_altered_chunk_streams_are_refused(tamper, message) -> None:  # type: ignore[no-untyped-def]
    chunks, manifest = sealed_chunks(DATA)
    bad_chunks, bad_manifest = tamper(chunks, manifest)
    with pytest.raises(errors.AttachmentCorruptError, match=message):
        open_all(bad_chunks, bad_manifest)


def test_chunk_of_another_attachment_is_refused() -> None:
    chunks, manifest = sealed_chunks(DATA)
    other = ChunkSealer(OWNER, key=manifest.key)  # same key, other id: the AAD still differs
    [(_, foreign)] = other.push(DATA[: CHUNK_BYTES + 1])
    with pytest.raises(errors.AttachmentCorruptError, match="does not authenticate"):
        open_all([foreign, *chunks[1:]], manifest)


def test_out_of_order_index_is_refused() -> None:
    chunks, manifest = sealed_chunks(DATA)
    opener = ChunkOpener(manifest)
    with pytest.raises(errors.AttachmentCorruptError, match="out of order"):
        opener.open(1, chunks[1])


SENDER, RECIPIENT = "ru-mvd-dushanbe", "tj-mvd-moscow"


def _case_with(manifest: AttachmentManifest) -> CaseMessage:
    return CaseMessage(
        case_id="C-1", text="see file", attachments=(Attachment("f.bin", "x/y", b"", b"", manifest),)
    )


def _seal(offices, directory: Directory, body: CaseMessage):  # type: ignore[no-untyped-def]
    return seal(
        body,
        sender=SENDER,
        sender_keys=offices[SENDER].signing,
        recipients=[RECIPIENT],
        directory=directory,
        suite=Suite.CLASSIC,
        now_ms=NOW_MS,
        ttl_s=60,
    )


def test_manifest_travels_in_the_body_and_the_header_announces_it(offices, directory) -> None:  # type: ignore[no-untyped-def]
    _, manifest = sealed_chunks(b"payload")
    body = _case_with(dataclasses.replace(manifest, owner=SENDER))
    assert decode_body(encode_body(body)) == body
    env = _seal(offices, directory, body)
    [digest] = env.header.context.attachments
    assert (digest.id, digest.owner, digest.root, digest.chunk_count) == (
        manifest.id,
        SENDER,
        manifest.root,
        1,
    )
    assert digest.sealed_size == len(b"payload") + 16
    assert manifest.key not in env.header_bytes  # the key is sealed, never in the clear header
    opened = open_envelope(
        env, me=RECIPIENT, my_keys=offices[RECIPIENT].encryption, directory=directory, now_ms=NOW_MS
    )
    assert opened.body == body


def test_sealing_another_offices_attachment_is_refused(offices, directory) -> None:  # type: ignore[no-untyped-def]
    _, manifest = sealed_chunks(b"payload")  # owned by OWNER, not the sender
    with pytest.raises(errors.AttachmentCorruptError, match="another office"):
        _seal(offices, directory, _case_with(manifest))
