"""Codec for message bodies: the plaintext sealed inside an envelope.

Converts ``model.Alert``, ``model.CaseMessage`` and ``model.ConsularRequest``
to and from ``liaison.v1.Body``. The decoder checks ``MAX_BODY_BYTES`` (or a
lower caller-given limit) before parsing; unknown enum values, an empty body
and broken model invariants are CodecError.

It does not encrypt or know about envelopes.
"""

from __future__ import annotations

from typing import Final

from exchange._pb.liaison.v1 import body_pb2, envelope_pb2
from exchange.core.codec.envelope import decode_enum, parse_limited
from exchange.core.errors import CodecError
from exchange.core.model import (
    Alert,
    AlertCategory,
    Attachment,
    AttachmentManifest,
    Body,
    CaseMessage,
    ConsularRequest,
    ConsularRequestType,
    Identifier,
    Person,
    Priority,
)

__all__ = ["MAX_BODY_BYTES", "body_from_pb", "body_to_pb", "decode_body", "encode_body"]

MAX_BODY_BYTES: Final = 16 * 1024 * 1024


def _person_pb(p: Person) -> body_pb2.Person:
    return body_pb2.Person(
        full_name=p.full_name,
        date_of_birth=p.date_of_birth,
        nationality=p.nationality,
        identifiers=[
            body_pb2.Identifier(scheme=i.scheme, value=i.value, issuer=i.issuer) for i in p.identifiers
        ],
        role=p.role,
    )


def _person(m: body_pb2.Person) -> Person:
    return Person(
        full_name=m.full_name,
        date_of_birth=m.date_of_birth,
        nationality=m.nationality,
        identifiers=tuple(Identifier(i.scheme, i.value, i.issuer) for i in m.identifiers),
        role=m.role,
    )


def _manifest_pb(m: AttachmentManifest | None) -> body_pb2.AttachmentManifest | None:
    if m is None:
        return None
    return body_pb2.AttachmentManifest(
        id=m.id,
        owner=m.owner,
        size=m.size,
        chunk_size=m.chunk_size,
        chunk_count=m.chunk_count,
        sha256=m.sha256,
        root=m.root,
        key=m.key,
    )


def _manifest(a: body_pb2.Attachment) -> AttachmentManifest | None:
    if not a.HasField("external"):
        return None
    m = a.external
    return AttachmentManifest(m.id, m.owner, m.size, m.chunk_size, m.chunk_count, m.sha256, m.root, m.key)


def _attachments_pb(attachments: tuple[Attachment, ...]) -> list[body_pb2.Attachment]:
    return [
        body_pb2.Attachment(
            name=a.name,
            media_type=a.media_type,
            content=a.content,
            sha256=a.sha256,
            external=_manifest_pb(a.external),
        )
        for a in attachments
    ]


def _attachments(ms: list[body_pb2.Attachment]) -> tuple[Attachment, ...]:
    return tuple(Attachment(a.name, a.media_type, a.content, a.sha256, _manifest(a)) for a in ms)


def body_to_pb(body: Body) -> body_pb2.Body:
    """The protobuf form of a body (exposed for services that embed bodies in replies)."""
    if isinstance(body, Alert):
        return body_pb2.Body(
            alert=body_pb2.Alert(
                category=body_pb2.AlertCategory.ValueType(body.category),
                priority=envelope_pb2.Priority.ValueType(body.priority),
                subject=body.subject,
                text=body.text,
                persons=[_person_pb(p) for p in body.persons],
                attachments=_attachments_pb(body.attachments),
            )
        )
    if isinstance(body, CaseMessage):
        return body_pb2.Body(
            case_message=body_pb2.CaseMessage(
                case_id=body.case_id,
                thread=body.thread,
                text=body.text,
                attachments=_attachments_pb(body.attachments),
                subject=body.subject,
            )
        )
    return body_pb2.Body(
        consular_request=body_pb2.ConsularRequest(
            citizen=_person_pb(body.citizen),
            request_type=body_pb2.ConsularRequestType.ValueType(body.request_type),
            text=body.text,
            subject=body.subject,
            attachments=_attachments_pb(body.attachments),
        )
    )


def body_from_pb(m: body_pb2.Body) -> Body:
    """The domain body of a parsed protobuf; CodecError when empty or invalid."""
    which = m.WhichOneof("content")
    try:
        if which == "alert":
            a = m.alert
            return Alert(
                category=decode_enum(AlertCategory, a.category, "alert category"),
                priority=decode_enum(Priority, a.priority, "priority"),
                subject=a.subject,
                text=a.text,
                persons=tuple(_person(p) for p in a.persons),
                attachments=_attachments(list(a.attachments)),
            )
        if which == "case_message":
            c = m.case_message
            return CaseMessage(
                case_id=c.case_id,
                text=c.text,
                thread=c.thread,
                subject=c.subject,
                attachments=_attachments(list(c.attachments)),
            )
        if which == "consular_request":
            r = m.consular_request
            if not r.HasField("citizen"):
                raise CodecError("consular request names no citizen")
            return ConsularRequest(
                citizen=_person(r.citizen),
                request_type=decode_enum(ConsularRequestType, r.request_type, "consular request type"),
                text=r.text,
                subject=r.subject,
                attachments=_attachments(list(r.attachments)),
            )
    except ValueError as e:
        raise CodecError(f"body is invalid: {e}") from e
    raise CodecError("body is empty")


def encode_body(body: Body) -> bytes:
    return body_to_pb(body).SerializeToString(deterministic=True)


def decode_body(data: bytes, limit: int = MAX_BODY_BYTES) -> Body:
    """Parse body bytes; ``limit`` (e.g. the directory's) is checked before parsing."""
    limit = min(limit, MAX_BODY_BYTES)
    return body_from_pb(parse_limited(body_pb2.Body(), data, limit, "body"))
