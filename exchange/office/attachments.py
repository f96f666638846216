"""The office node's attachment shell: upload, attach to a message, download.

Upload: plaintext arrives in pieces from an agency system, is sealed chunk by
chunk (``exchange.core.attachments``) and published to the attachment stream
(``exchange.nats.attachments``) with a bounded window; the manifest, content
key included, is stored only once every chunk is acknowledged by JetStream.
Send: ``with_uploads`` turns uploaded attachment ids into body attachments
carrying their manifests (the envelope seals them; its signed header
announces them). Download: only a message in this office's inbox (or one it
sent) names attachments it may fetch; each chunk is fetched, authenticated
and decrypted in order and the whole is checked at the end, so a caller
never gets bad data without an error at the end of the stream.

It does not speak gRPC (``exchange.office.service`` does) nor hold more than
``WINDOW`` chunks at a time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
from collections.abc import AsyncIterator, Callable
from typing import Final

import structlog

from exchange.core import primitives
from exchange.core.api import AttachmentRef
from exchange.core.attachments import CHUNK_BYTES, ChunkOpener, ChunkSealer
from exchange.core.clock import Clock
from exchange.core.codec.body import decode_body
from exchange.core.errors import (
    AttachmentCorruptError,
    CodecError,
    NotFoundError,
    TransportError,
)
from exchange.core.model import Attachment, AttachmentManifest, Body
from exchange.nats.attachments import ChunkPublisher, fetch_chunks
from exchange.nats.transport import Transport
from exchange.office.store import OfficeStore, UploadRecord

__all__ = ["MAX_NAME_CHARS", "OfficeAttachments", "UploadPiece"]

log = structlog.get_logger()

MAX_NAME_CHARS: Final = 255
MAX_MEDIA_TYPE_CHARS: Final = 127
UploadPiece = tuple[str, str, bytes]  # (name, media type) on the first piece; data on each


class OfficeAttachments:
    """Attachment operations of one office node; ``transport`` is the node's live NATS link."""

    def __init__(
        self,
        office: str,
        store: OfficeStore,
        transport: Callable[[], Transport | None],
        clock: Clock,
    ) -> None:
        self.office = office
        self.store = store
        self._transport = transport
        self.clock = clock

    def _link(self) -> Transport:
        transport = self._transport()
        if transport is None:
            raise TransportError("the node is not connected to NATS yet")
        return transport

    # --- upload ----------------------------------------------------------------------

    async def upload(self, pieces: AsyncIterator[UploadPiece], agency: str = "") -> AttachmentRef:
        """Seal and publish an attachment; return its reference once every chunk is durable."""
        transport = self._link()
        sealer = ChunkSealer(self.office)
        publisher = ChunkPublisher(transport, self.office, sealer.id)
        name = media_type = ""
        first = True
        try:
            async for piece_name, piece_type, data in pieces:
                if first:
                    name, media_type, first = _check_name(piece_name, piece_type), piece_type, False
                for index, sealed in sealer.push(data):
                    await publisher.put(index, sealed)
            _check_name(name, media_type)  # also refuses an upload without any message
            (index, sealed), done = sealer.finish()
            await publisher.put(index, sealed)
            await publisher.drain()
        except BaseException:
            await publisher.abort()
            raise
        m = done.manifest
        record = UploadRecord(
            m.id, name, media_type, m.size, m.chunk_size, m.chunk_count, m.sha256, m.root, m.key, self.clock()
        )
        await self.store.record_upload(record)
        log.info("attachment_uploaded", attachment=m.id, size=m.size, chunks=m.chunk_count, agency=agency)
        return AttachmentRef(m.id, name, media_type, m.size, m.sha256)

    # --- send ------------------------------------------------------------------------

    async def with_uploads(self, body: Body, attachment_ids: tuple[str, ...]) -> Body:
        """``body`` with each uploaded attachment appended as an external attachment."""
        if any(a.external is not None for a in body.attachments):
            raise CodecError("external attachments are sent by uploaded attachment id, not in the body")
        if not attachment_ids:
            return body
        added = []
        for attachment_id in attachment_ids:
            rec = await asyncio.to_thread(self.store.upload, attachment_id)
            if rec is None:
                raise NotFoundError(f"attachment {attachment_id} was not uploaded to this office")
            manifest = AttachmentManifest(
                rec.id,
                self.office,
                rec.size,
                rec.chunk_size,
                rec.chunk_count,
                rec.sha256,
                rec.root,
                rec.content_key,
            )
            added.append(Attachment(rec.name, rec.media_type, b"", rec.sha256, manifest))
        return dataclasses.replace(body, attachments=body.attachments + tuple(added))

    # --- download --------------------------------------------------------------------

    def _attachment(self, message_id: str, index: int) -> Attachment:
        rec = self.store.inbox_message(message_id)
        stored = rec.body if rec is not None else None
        if stored is None:
            sent = self.store.sent(message_id)
            stored = sent.body if sent is not None else None
        if stored is None:
            # Not a recipient (nor the sender) of this message: nothing to download here.
            raise NotFoundError(f"message {message_id} is not in this office's inbox")
        attachments = decode_body(stored).attachments
        if not 0 <= index < len(attachments):
            raise NotFoundError(f"message {message_id} has no attachment {index}")
        return attachments[index]

    async def download(self, message_id: str, index: int) -> AsyncIterator[AttachmentRef | bytes]:
        """The reference first, then checked plaintext chunks; raises at the first mismatch."""
        attachment = await asyncio.to_thread(self._attachment, message_id, index)
        m = attachment.external
        ident = m.id if m is not None else f"{message_id}.{index}"
        size = m.size if m is not None else len(attachment.content)
        yield AttachmentRef(ident, attachment.name, attachment.media_type, size, attachment.sha256)
        if m is None:
            async for piece in _inline(attachment):
                yield piece
            return
        opener = ChunkOpener(m)
        async for chunk_index, sealed in fetch_chunks(self._link(), m.owner, m.id, m.chunk_count):
            plaintext = opener.open(chunk_index, sealed)
            if chunk_index == m.chunk_count - 1:
                # Everything checked before the last piece leaves: a stream that ends
                # without an error carried exactly the attachment the sender sealed.
                opener.finish()
            yield plaintext
        log.info("attachment_downloaded", attachment=m.id, message_id=message_id, size=m.size)


def _check_name(name: str, media_type: str) -> str:
    if not name or len(name) > MAX_NAME_CHARS or len(media_type) > MAX_MEDIA_TYPE_CHARS:
        raise CodecError(f"an upload's first message names the attachment (1..{MAX_NAME_CHARS} characters)")
    return name


async def _inline(attachment: Attachment) -> AsyncIterator[bytes]:
    digest = primitives.sha256(attachment.content)
    if attachment.sha256 and not hmac.compare_digest(digest, attachment.sha256):
        raise AttachmentCorruptError("inline attachment does not match its SHA-256")
    for start in range(0, len(attachment.content), CHUNK_BYTES):
        yield attachment.content[start : start + CHUNK_BYTES]
