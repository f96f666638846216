"""ExchangeService requests and responses to and from ``exchange.core.api`` types.

Used by both ends: the office node's servicer (requests in, responses out)
and the client SDK (requests out, responses in). Bodies stored by the node
as codec bytes are spliced into responses without a domain round trip.
"""

from __future__ import annotations

from exchange._pb.liaison.v1 import body_pb2, exchange_pb2
from exchange.codec.body import body_from_pb, body_to_pb
from exchange.codec.envelope import decode_enum, signed_statement_from_pb, signed_statement_to_pb
from exchange.core.api import (
    CaseEntry,
    Delivery,
    MessageStatus,
    OfficeInfo,
    OfficeList,
    RecipientStatus,
    SendRequest,
    SendResult,
)
from exchange.core.envelope import SignedStatement
from exchange.core.errors import CodecError
from exchange.core.model import Handling, Kind, Priority, Reason, ReceiptState

__all__ = [
    "acknowledge_to_pb",
    "case_from_pb",
    "case_to_pb",
    "delivery_from_pb",
    "delivery_to_pb",
    "offices_from_pb",
    "offices_to_pb",
    "send_request_from_pb",
    "send_request_to_pb",
    "send_result_from_pb",
    "send_result_to_pb",
    "status_from_pb",
    "status_to_pb",
]

SendPb = (
    exchange_pb2.SendAlertRequest
    | exchange_pb2.SendCaseMessageRequest
    | exchange_pb2.SendConsularRequestRequest
)


# --- Send --------------------------------------------------------------------------


def send_request_to_pb(req: SendRequest) -> SendPb:
    options = exchange_pb2.SendOptions(
        recipients=list(req.recipients),
        case_id=req.case_id,
        in_reply_to=req.in_reply_to,
        ttl_s=req.ttl_s,
        handling=int(req.handling),  # type: ignore[arg-type]
        idempotency_key=req.idempotency_key,
        attachments=[exchange_pb2.AttachmentRef(id=i) for i in req.attachments],
    )
    body = body_to_pb(req.body)
    if body.HasField("alert"):
        return exchange_pb2.SendAlertRequest(options=options, alert=body.alert)
    if body.HasField("case_message"):
        return exchange_pb2.SendCaseMessageRequest(options=options, case_message=body.case_message)
    return exchange_pb2.SendConsularRequestRequest(options=options, consular_request=body.consular_request)


def send_request_from_pb(m: SendPb) -> SendRequest:
    """Turn a Send* request into a SendRequest; CodecError names what is wrong."""
    if isinstance(m, exchange_pb2.SendAlertRequest):
        body_pb, present = body_pb2.Body(alert=m.alert), m.HasField("alert")
    elif isinstance(m, exchange_pb2.SendCaseMessageRequest):
        body_pb, present = body_pb2.Body(case_message=m.case_message), m.HasField("case_message")
    else:
        body_pb, present = body_pb2.Body(consular_request=m.consular_request), m.HasField("consular_request")
    if not present:
        raise CodecError("the request carries no message body")
    o = m.options
    case_id = o.case_id or (body_pb.case_message.case_id if body_pb.HasField("case_message") else "")
    try:
        return SendRequest(
            body=body_from_pb(body_pb),
            recipients=tuple(o.recipients),
            case_id=case_id,
            in_reply_to=o.in_reply_to,
            ttl_s=o.ttl_s,
            handling=Handling(o.handling) if o.handling else Handling.OFFICIAL,
            idempotency_key=o.idempotency_key,
            attachments=tuple(a.id for a in o.attachments),
        )
    except ValueError as e:
        raise CodecError(str(e)) from e


def send_result_to_pb(r: SendResult) -> exchange_pb2.SendResponse:
    resp = exchange_pb2.SendResponse(message_id=r.message_id)
    if r.accepted is not None:
        resp.accepted.CopyFrom(signed_statement_to_pb(r.accepted))
    return resp


def send_result_from_pb(m: exchange_pb2.SendResponse) -> SendResult:
    return SendResult(m.message_id, signed_statement_from_pb(m.accepted) if m.HasField("accepted") else None)


# --- deliveries ------------------------------------------------------------------


def delivery_to_pb(d: Delivery) -> exchange_pb2.Delivery:
    return exchange_pb2.Delivery(
        cursor=d.cursor,
        message_id=d.message_id,
        sender=d.sender,
        recipients=list(d.recipients),
        kind=int(d.kind),  # type: ignore[arg-type]
        priority=int(d.priority),  # type: ignore[arg-type]
        case_id=d.case_id,
        in_reply_to=d.in_reply_to,
        created_ms=d.created_ms,
        delivered_ms=d.delivered_ms,
        body=body_to_pb(d.body),
        log_index=d.log_index,
        read=d.read,
    )


def delivery_from_pb(m: exchange_pb2.Delivery) -> Delivery:
    return Delivery(
        cursor=m.cursor,
        message_id=m.message_id,
        sender=m.sender,
        recipients=tuple(m.recipients),
        kind=decode_enum(Kind, m.kind, "kind"),
        priority=decode_enum(Priority, m.priority, "priority"),
        case_id=m.case_id,
        in_reply_to=m.in_reply_to,
        created_ms=m.created_ms,
        delivered_ms=m.delivered_ms,
        body=body_from_pb(m.body),
        log_index=m.log_index,
        read=m.read,
    )


# --- status ----------------------------------------------------------------------


def status_to_pb(s: MessageStatus) -> exchange_pb2.GetStatusResponse:
    return exchange_pb2.GetStatusResponse(
        message_id=s.message_id,
        recipients=[
            exchange_pb2.RecipientStatus(
                recipient=r.recipient,
                state=int(r.state or 0),  # type: ignore[arg-type]
                rejection=int(r.rejection or 0),  # type: ignore[arg-type]
                detail=r.detail,
            )
            for r in s.recipients
        ],
        statements=[signed_statement_to_pb(x) for x in s.statements],
        rejected=s.rejected,
    )


def status_from_pb(m: exchange_pb2.GetStatusResponse) -> MessageStatus:
    return MessageStatus(
        message_id=m.message_id,
        recipients=tuple(
            RecipientStatus(
                recipient=r.recipient,
                state=ReceiptState(r.state) if r.state else None,
                rejection=Reason(r.rejection) if r.rejection else None,
                detail=r.detail,
            )
            for r in m.recipients
        ),
        statements=tuple(signed_statement_from_pb(x) for x in m.statements),
        rejected=m.rejected,
    )


# --- offices and cases -----------------------------------------------------------


def offices_to_pb(o: OfficeList) -> exchange_pb2.ListOfficesResponse:
    return exchange_pb2.ListOfficesResponse(
        directory_version=o.directory_version,
        self=o.self_id,
        offices=[
            exchange_pb2.OfficeInfo(
                id=i.id,
                country=i.country,
                agency=i.agency,
                city=i.city,
                display_name=i.display_name,
                may_send=[int(k) for k in i.may_send],  # type: ignore[misc]
            )
            for i in o.offices
        ],
    )


def offices_from_pb(m: exchange_pb2.ListOfficesResponse) -> OfficeList:
    return OfficeList(
        directory_version=m.directory_version,
        self_id=m.self,
        offices=tuple(
            OfficeInfo(
                id=i.id,
                country=i.country,
                agency=i.agency,
                city=i.city,
                display_name=i.display_name,
                may_send=tuple(Kind(k) for k in i.may_send),
            )
            for i in m.offices
        ),
    )


def case_to_pb(case_id: str, entries: list[CaseEntry]) -> exchange_pb2.GetCaseResponse:
    return exchange_pb2.GetCaseResponse(
        case_id=case_id,
        entries=[
            exchange_pb2.CaseEntry(
                message_id=e.message_id,
                sender=e.sender,
                recipients=list(e.recipients),
                kind=int(e.kind),  # type: ignore[arg-type]
                created_ms=e.created_ms,
                body=body_to_pb(e.body),
                outgoing=e.outgoing,
            )
            for e in entries
        ],
    )


def case_from_pb(m: exchange_pb2.GetCaseResponse) -> list[CaseEntry]:
    return [
        CaseEntry(
            message_id=e.message_id,
            sender=e.sender,
            recipients=tuple(e.recipients),
            kind=decode_enum(Kind, e.kind, "kind"),
            created_ms=e.created_ms,
            body=body_from_pb(e.body),
            outgoing=e.outgoing,
        )
        for e in m.entries
    ]


def acknowledge_to_pb(read: SignedStatement) -> exchange_pb2.AcknowledgeResponse:
    return exchange_pb2.AcknowledgeResponse(read=signed_statement_to_pb(read))
