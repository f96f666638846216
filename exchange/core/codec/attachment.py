"""Codec for the attachment RPCs: upload requests, references, download requests and responses.

Maps ``UploadAttachmentRequest``/``UploadAttachmentResponse``/``AttachmentRef``/
``DownloadAttachmentRequest``/``DownloadAttachmentResponse`` to and from plain
values and ``exchange.core.api.AttachmentRef``.
It does not seal, check or store anything.
"""

from __future__ import annotations

from exchange._pb.liaison.v1 import exchange_pb2
from exchange.core.api import AttachmentRef
from exchange.core.ids import check_message_id

__all__ = [
    "download_chunk_from_pb",
    "download_chunk_to_pb",
    "download_request_from_pb",
    "download_request_to_pb",
    "ref_from_pb",
    "ref_to_pb",
    "upload_chunk_to_pb",
    "upload_piece",
    "upload_response_from_pb",
    "upload_response_to_pb",
]


def upload_chunk_to_pb(
    data: bytes, name: str = "", media_type: str = ""
) -> exchange_pb2.UploadAttachmentRequest:
    return exchange_pb2.UploadAttachmentRequest(name=name, media_type=media_type, data=data)


def upload_piece(m: exchange_pb2.UploadAttachmentRequest) -> tuple[str, str, bytes]:
    """(name, media type, data) of one upload message; name and type count on the first only."""
    return m.name, m.media_type, m.data


def ref_to_pb(r: AttachmentRef) -> exchange_pb2.AttachmentRef:
    return exchange_pb2.AttachmentRef(
        id=r.id, name=r.name, media_type=r.media_type, size=r.size, sha256=r.sha256
    )


def ref_from_pb(m: exchange_pb2.AttachmentRef) -> AttachmentRef:
    return AttachmentRef(m.id, m.name, m.media_type, m.size, m.sha256)


def upload_response_to_pb(r: AttachmentRef) -> exchange_pb2.UploadAttachmentResponse:
    return exchange_pb2.UploadAttachmentResponse(ref=ref_to_pb(r))


def upload_response_from_pb(m: exchange_pb2.UploadAttachmentResponse) -> AttachmentRef:
    return ref_from_pb(m.ref)


def download_request_to_pb(message_id: str, index: int) -> exchange_pb2.DownloadAttachmentRequest:
    return exchange_pb2.DownloadAttachmentRequest(message_id=message_id, index=index)


def download_request_from_pb(m: exchange_pb2.DownloadAttachmentRequest) -> tuple[str, int]:
    return check_message_id(m.message_id), m.index


def download_chunk_to_pb(item: AttachmentRef | bytes) -> exchange_pb2.DownloadAttachmentResponse:
    if isinstance(item, AttachmentRef):
        return exchange_pb2.DownloadAttachmentResponse(ref=ref_to_pb(item))
    return exchange_pb2.DownloadAttachmentResponse(data=item)


def download_chunk_from_pb(m: exchange_pb2.DownloadAttachmentResponse) -> tuple[AttachmentRef | None, bytes]:
    """(the reference, when this message carries it; the verified plaintext it carries)."""
    return (ref_from_pb(m.ref) if m.HasField("ref") else None), m.data
