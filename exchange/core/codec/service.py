"""ExchangeService requests and responses to and from ``exchange.core.api`` types.

Used by both ends: the office node's servicer (requests in, responses out)
and the client SDK (requests out, responses in), so neither builds or reads
a protobuf message itself. Every decoder maps an unknown enum number or a
malformed value to ``CodecError``. It does not check policy or signatures.
"""

from __future__ import annotations

from typing import Final, TypeVar

from exchange._pb.liaison.v1 import body_pb2, exchange_pb2
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
from exchange.core.codec.body import body_from_pb, body_to_pb
from exchange.core.codec.envelope import decode_enum, signed_statement_from_pb, signed_statement_to_pb
from exchange.core.envelope import SignedStatement
from exchange.core.errors import CodecError
from exchange.core.ids import check_message_id
from exchange.core.model import (
    Alert,
    CaseMessage,
    ConsularRequest,
    Handling,
    Kind,
    Priority,
    Reason,
    ReceiptState,
)

__all__ = [
    "EXCHANGE_SERVICE",
    "acknowledge_request_from_pb",
    "acknowledge_request_to_pb",
    "acknowledge_to_pb",
    "case_from_pb",
    "case_request_from_pb",
    "case_request_to_pb",
    "case_to_pb",
    "delivery_from_pb",
    "delivery_to_pb",
    "offices_from_pb",
    "offices_request_to_pb",
    "offices_to_pb",
    "send_alert_request_to_pb",
    "send_alert_response_to_pb",
    "send_case_message_request_to_pb",
    "send_case_message_response_to_pb",
    "send_consular_request_request_to_pb",
    "send_consular_request_response_to_pb",
    "send_request_from_pb",
    "send_request_to_pb",
    "send_result_from_pb",
    "status_from_pb",
    "status_request_from_pb",
    "status_request_to_pb",
    "status_to_pb",
    "subscribe_request_from_pb",
    "subscribe_request_to_pb",
    "subscribe_response_from_pb",
    "subscribe_response_to_pb",
]

# The full gRPC name ("liaison.v1.ExchangeService"), for health, reflection and access rules.
EXCHANGE_SERVICE: Final = exchange_pb2.DESCRIPTOR.services_by_name["ExchangeService"].full_name

SendPb = (
    exchange_pb2.SendAlertRequest
    | exchange_pb2.SendCaseMessageRequest
    | exchange_pb2.SendConsularRequestRequest
)
# The three Send* responses carry the same fields (one message per RPC, buf STANDARD).
SendResponsePb = (
    exchange_pb2.SendAlertResponse
    | exchange_pb2.SendCaseMessageResponse
    | exchange_pb2.SendConsularRequestResponse
)
_SR = TypeVar(
    "_SR",
    exchange_pb2.SendAlertResponse,
    exchange_pb2.SendCaseMessageResponse,
    exchange_pb2.SendConsularRequestResponse,
)


# --- Send --------------------------------------------------------------------------


def _options_to_pb(req: SendRequest) -> exchange_pb2.SendOptions:
    return exchange_pb2.SendOptions(
        recipients=list(req.recipients),
        case_id=req.case_id,
        in_reply_to=req.in_reply_to,
        ttl_s=req.ttl_s,
        handling=int(req.handling),  # type: ignore[arg-type]
        idempotency_key=req.idempotency_key,
        attachments=[exchange_pb2.AttachmentRef(id=i) for i in req.attachments],
    )


def send_alert_request_to_pb(req: SendRequest, alert: Alert) -> exchange_pb2.SendAlertRequest:
    """SendAlert's request; ``alert`` is ``req.body``, narrowed by the caller."""
    return exchange_pb2.SendAlertRequest(options=_options_to_pb(req), alert=body_to_pb(alert).alert)


def send_case_message_request_to_pb(
    req: SendRequest, case_message: CaseMessage
) -> exchange_pb2.SendCaseMessageRequest:
    return exchange_pb2.SendCaseMessageRequest(
        options=_options_to_pb(req), case_message=body_to_pb(case_message).case_message
    )


def send_consular_request_request_to_pb(
    req: SendRequest, consular_request: ConsularRequest
) -> exchange_pb2.SendConsularRequestRequest:
    return exchange_pb2.SendConsularRequestRequest(
        options=_options_to_pb(req), consular_request=body_to_pb(consular_request).consular_request
    )


def send_request_to_pb(req: SendRequest) -> SendPb:
    """The Send* request that carries ``req.body`` (the RPC follows the body's kind)."""
    body = req.body
    if isinstance(body, Alert):
        return send_alert_request_to_pb(req, body)
    if isinstance(body, CaseMessage):
        return send_case_message_request_to_pb(req, body)
    return send_consular_request_request_to_pb(req, body)


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
            handling=decode_enum(Handling, o.handling, "handling") if o.handling else Handling.OFFICIAL,
            idempotency_key=o.idempotency_key,
            attachments=tuple(a.id for a in o.attachments),
        )
    except ValueError as e:
        raise CodecError(str(e)) from e


def _send_response(resp: _SR, r: SendResult) -> _SR:
    resp.message_id = r.message_id
    if r.accepted is not None:
        resp.accepted.CopyFrom(signed_statement_to_pb(r.accepted))
    return resp


def send_alert_response_to_pb(r: SendResult) -> exchange_pb2.SendAlertResponse:
    return _send_response(exchange_pb2.SendAlertResponse(), r)


def send_case_message_response_to_pb(r: SendResult) -> exchange_pb2.SendCaseMessageResponse:
    return _send_response(exchange_pb2.SendCaseMessageResponse(), r)


def send_consular_request_response_to_pb(r: SendResult) -> exchange_pb2.SendConsularRequestResponse:
    return _send_response(exchange_pb2.SendConsularRequestResponse(), r)


def send_result_from_pb(m: SendResponsePb) -> SendResult:
    return SendResult(m.message_id, signed_statement_from_pb(m.accepted) if m.HasField("accepted") else None)


# --- requests without a body -------------------------------------------------------


def subscribe_request_to_pb(after_cursor: int, include_read: bool) -> exchange_pb2.SubscribeRequest:
    return exchange_pb2.SubscribeRequest(after_cursor=after_cursor, include_read=include_read)


def subscribe_request_from_pb(m: exchange_pb2.SubscribeRequest) -> tuple[int, bool]:
    """(after cursor, include read)."""
    return m.after_cursor, m.include_read


def acknowledge_request_to_pb(message_id: str) -> exchange_pb2.AcknowledgeRequest:
    return exchange_pb2.AcknowledgeRequest(message_id=message_id)


def acknowledge_request_from_pb(m: exchange_pb2.AcknowledgeRequest) -> str:
    """The message id, checked (``CodecError`` when it is not a canonical UUIDv7)."""
    return check_message_id(m.message_id)


def status_request_to_pb(message_id: str) -> exchange_pb2.GetStatusRequest:
    return exchange_pb2.GetStatusRequest(message_id=message_id)


def status_request_from_pb(m: exchange_pb2.GetStatusRequest) -> str:
    return check_message_id(m.message_id)


def offices_request_to_pb() -> exchange_pb2.ListOfficesRequest:
    return exchange_pb2.ListOfficesRequest()


def case_request_to_pb(case_id: str) -> exchange_pb2.GetCaseRequest:
    return exchange_pb2.GetCaseRequest(case_id=case_id)


def case_request_from_pb(m: exchange_pb2.GetCaseRequest) -> str:
    return m.case_id


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


def subscribe_response_to_pb(d: Delivery) -> exchange_pb2.SubscribeResponse:
    return exchange_pb2.SubscribeResponse(delivery=delivery_to_pb(d))


def subscribe_response_from_pb(m: exchange_pb2.SubscribeResponse) -> Delivery:
    if not m.HasField("delivery"):
        raise CodecError("the subscription answered without a delivery")
    return delivery_from_pb(m.delivery)


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
                state=decode_enum(ReceiptState, r.state, "receipt state") if r.state else None,
                rejection=decode_enum(Reason, r.rejection, "rejection reason") if r.rejection else None,
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
                may_send=tuple(decode_enum(Kind, k, "kind") for k in i.may_send),
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
