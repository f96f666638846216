"""Large attachments: sealing into chunks and opening them again, one chunk at a time.

Pure core, no I/O. An attachment is cut into ``CHUNK_BYTES`` plaintext
chunks; each is sealed with ChaCha20-Poly1305 under a fresh random
per-attachment key, with the nonce derived from the chunk index and the
associated data binding the attachment id, the index and a last-chunk flag,
so a chunk cannot be moved to another attachment or position, dropped,
duplicated or the attachment truncated without the recipient noticing. The
root (``root_of``) is a hash over the SHA-256 of every sealed chunk in
order: it goes into the signed envelope header, so the gateway can check
the chunks and the audit log commits to them without the content key.

``ChunkSealer`` and ``ChunkOpener`` hold at most two chunks: memory does
not grow with the attachment. This module does not store, publish or fetch
chunks (``exchange.attach_store`` does that).
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass
from typing import Final

from exchange.core import errors, primitives
from exchange.core.bounds import MAX_ATTACHMENTS
from exchange.core.envelope import AttachmentDigest
from exchange.core.model import AttachmentManifest, check_attachment_id

__all__ = [
    "CHUNK_BYTES",
    "MAX_ATTACHMENTS_PER_MESSAGE",
    "MAX_ATTACHMENT_BYTES",
    "SEALED_CHUNK_MAX",
    "ChunkOpener",
    "ChunkSealer",
    "SealedAttachment",
    "check_against_header",
    "digest_of",
    "new_attachment_id",
    "sealed_size_of",
]

CHUNK_BYTES: Final = 1 << 20  # plaintext per chunk; one sealed chunk is one NATS message
TAG_BYTES: Final = 16
SEALED_CHUNK_MAX: Final = CHUNK_BYTES + TAG_BYTES
MAX_ATTACHMENT_BYTES: Final = 4 << 30  # 4 GiB: far above SIENA's 50 MiB, below any stream limit
MAX_ATTACHMENTS_PER_MESSAGE: Final = MAX_ATTACHMENTS
_AAD_PREFIX: Final = b"liaison/v1/attach-chunk\x00"
_ROOT_PREFIX: Final = b"liaison/v1/attach-root\x00"
_INDEX: Final = struct.Struct(">Q")


def new_attachment_id() -> str:
    """128 random bits as hex: knowing an id is what lets a node fetch the chunks."""
    return primitives.random_bytes(16).hex()


def _nonce(index: int) -> bytes:
    return b"\x00\x00\x00\x00" + _INDEX.pack(index)


def _aad(attachment_id: str, index: int, last: bool) -> bytes:
    flag = b"\x01" if last else b"\x00"
    return _AAD_PREFIX + attachment_id.encode() + b"\x00" + _INDEX.pack(index) + flag


class _Root:
    """Streaming root: SHA-256(prefix ‖ id ‖ 0 ‖ SHA-256(sealed_0) ‖ SHA-256(sealed_1) ‖ …)."""

    def __init__(self, attachment_id: str) -> None:
        self._h = hashlib.sha256(_ROOT_PREFIX + attachment_id.encode() + b"\x00")
        self.count = 0
        self.sealed_size = 0

    def add(self, sealed: bytes) -> None:
        self._h.update(hashlib.sha256(sealed).digest())
        self.count += 1
        self.sealed_size += len(sealed)

    def digest(self) -> bytes:
        return self._h.copy().digest()


@dataclass(frozen=True)
class SealedAttachment:
    """What a finished upload leaves behind: the manifest (with its key) for the body."""

    manifest: AttachmentManifest
    sealed_size: int


class ChunkSealer:
    """Feed plaintext in any pieces; get sealed chunks (index, bytes) as they complete.

    The newest full chunk is held back until more data (or ``finish``) shows
    whether it is the last one: at most two chunks are buffered.
    """

    def __init__(self, owner: str, *, attachment_id: str | None = None, key: bytes | None = None) -> None:
        self.id = check_attachment_id(attachment_id or new_attachment_id())
        self.owner = owner
        self._key = key or primitives.random_bytes(primitives.AEAD_KEY_BYTES)
        self._buffer = bytearray()
        self._index = 0
        self._size = 0
        self._sha = hashlib.sha256()
        self._root = _Root(self.id)
        self._done = False

    def _seal(self, plaintext: bytes, last: bool) -> tuple[int, bytes]:
        index = self._index
        sealed = primitives.aead_seal_at(self._key, _nonce(index), plaintext, _aad(self.id, index, last))
        self._root.add(sealed)
        self._index += 1
        return index, sealed

    def push(self, data: bytes) -> list[tuple[int, bytes]]:
        """Add plaintext; return the chunks it completed (never the possibly-last one)."""
        if self._done:
            raise ValueError("sealer already finished")
        self._size += len(data)
        if self._size > MAX_ATTACHMENT_BYTES:
            raise errors.OversizeError(f"attachment exceeds {MAX_ATTACHMENT_BYTES} bytes")
        self._sha.update(data)
        self._buffer += data
        out = []
        while len(self._buffer) > CHUNK_BYTES:  # strictly more: the held chunk is not the last
            out.append(self._seal(bytes(self._buffer[:CHUNK_BYTES]), last=False))
            del self._buffer[:CHUNK_BYTES]
        return out

    def finish(self) -> tuple[tuple[int, bytes], SealedAttachment]:
        """Seal the last chunk (possibly empty); return it and the finished manifest."""
        if self._done:
            raise ValueError("sealer already finished")
        self._done = True
        last = self._seal(bytes(self._buffer), last=True)
        self._buffer.clear()
        manifest = AttachmentManifest(
            id=self.id,
            owner=self.owner,
            size=self._size,
            chunk_size=CHUNK_BYTES,
            chunk_count=self._root.count,
            sha256=self._sha.digest(),
            root=self._root.digest(),
            key=self._key,
        )
        return last, SealedAttachment(manifest, self._root.sealed_size)


def digest_of(sealed: SealedAttachment) -> AttachmentDigest:
    """The header's view of an attachment: no key, no plaintext digest."""
    m = sealed.manifest
    return AttachmentDigest(m.id, m.owner, sealed.sealed_size, m.chunk_count, m.root)


def sealed_size_of(manifest: AttachmentManifest) -> int:
    """Total sealed bytes implied by a manifest (each chunk carries a 16-byte tag)."""
    return manifest.size + manifest.chunk_count * TAG_BYTES


class ChunkOpener:
    """Open an attachment's sealed chunks in order and check the whole at the end.

    ``open`` must get indices 0, 1, … in order; anything else, a chunk that does
    not authenticate (tampered, moved, wrong key, wrong last flag) or an oversize
    one raises AttachmentCorruptError. ``finish`` checks count, size, plaintext
    SHA-256 and root, so no bad attachment ends as if it were good.
    """

    def __init__(self, manifest: AttachmentManifest) -> None:
        self.manifest = manifest
        self._next = 0
        self._size = 0
        self._sha = hashlib.sha256()
        self._root = _Root(manifest.id)

    def open(self, index: int, sealed: bytes) -> bytes:
        m = self.manifest
        if index != self._next or index >= m.chunk_count:
            raise errors.AttachmentCorruptError(
                f"attachment {m.id}: chunk {index} out of order (expected {self._next})"
            )
        if len(sealed) > m.chunk_size + TAG_BYTES:
            raise errors.AttachmentCorruptError(f"attachment {m.id}: chunk {index} is oversize")
        last = index == m.chunk_count - 1
        try:
            plaintext = primitives.aead_open_at(m.key, _nonce(index), sealed, _aad(m.id, index, last))
        except errors.DecryptError as e:
            raise errors.AttachmentCorruptError(
                f"attachment {m.id}: chunk {index} does not authenticate"
            ) from e
        if not last and len(plaintext) != m.chunk_size:
            raise errors.AttachmentCorruptError(f"attachment {m.id}: chunk {index} is short")
        self._root.add(sealed)
        self._sha.update(plaintext)
        self._size += len(plaintext)
        self._next += 1
        return plaintext

    def finish(self) -> None:
        m = self.manifest
        if self._next != m.chunk_count:
            raise errors.AttachmentCorruptError(
                f"attachment {m.id}: {self._next} of {m.chunk_count} chunks opened"
            )
        if self._size != m.size:
            raise errors.AttachmentCorruptError(f"attachment {m.id}: size differs from its manifest")
        if not hmac.compare_digest(self._root.digest(), m.root):
            raise errors.AttachmentCorruptError(f"attachment {m.id}: chunk root differs from its manifest")
        if not hmac.compare_digest(self._sha.digest(), m.sha256):
            raise errors.AttachmentCorruptError(f"attachment {m.id}: SHA-256 differs from its manifest")


def check_against_header(manifest: AttachmentManifest, digest: AttachmentDigest) -> None:
    """The body's manifest and the signed header must describe the same chunks."""
    if (
        manifest.id != digest.id
        or manifest.owner != digest.owner
        or manifest.chunk_count != digest.chunk_count
        or sealed_size_of(manifest) != digest.sealed_size
        or not hmac.compare_digest(manifest.root, digest.root)
    ):
        raise errors.AttachmentCorruptError(f"attachment {manifest.id}: manifest differs from the header")
