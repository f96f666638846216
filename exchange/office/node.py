"""The office node: send, receive, acknowledge and track messages.

The I/O shell around the pure core: it seals what agency systems send,
stores it durably before saying ACCEPTED, publishes the out-queue to the
gateway, opens what the gateway routes here, stores it before acknowledging
it to NATS, and keeps the signed receipt chain of every message it sent.
gRPC lives in ``exchange.office.service``; NATS in ``exchange.nats.transport``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence

import structlog

from exchange.core import primitives
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
from exchange.core.clock import Clock, now_ms
from exchange.core.codec.body import decode_body
from exchange.core.codec.envelope import (
    decode_frame,
    decode_signed_statement,
    encode_frame,
    encode_signed_statement,
)
from exchange.core.directory import DirectoryState
from exchange.core.envelope import Receipt, Rejection, Routed, SignedStatement
from exchange.core.errors import (
    LiaisonError,
    MissingKeyError,
    NotFoundError,
    SignatureError,
)
from exchange.core.identity import OfficeIdentity
from exchange.core.merkle import AuditError
from exchange.core.model import Kind, Priority, Reason, ReceiptState, Suite
from exchange.core.receipts import SentMessage, check_stamp, check_statement
from exchange.core.seal import EncodedBody, open_envelope, seal, sign_statement, verify_statement
from exchange.core.wire import (
    IN_STREAM,
    OFFICE_INBOX_ACK_WAIT_S,
    OFFICE_INBOX_MAX_DELIVER,
    delivered_msg_id,
    in_subject,
    office_durable,
    out_subject,
    read_msg_id,
)
from exchange.nats.transport import (
    Delivered,
    OutboundMessage,
    PermanentError,
    Transport,
    raise_if_cancelling,
)
from exchange.office.attachments import OfficeAttachments
from exchange.office.heads import HeadBook
from exchange.office.metrics import OfficeMetrics
from exchange.office.store import REJECTED, Frame, InboxRecord, OfficeStore, SentRecord, StatementRecord

__all__ = ["OfficeNode"]

log = structlog.get_logger()

PUBLISH_BATCH = 256
INBOX_BATCH = 256
PUBLISH_RETRY_S = 1.0


class OfficeNode:
    """One office's node. ``run`` drives its NATS side; the rest serves gRPC calls."""

    def __init__(
        self,
        *,
        office: str,
        identity: OfficeIdentity,
        directory: DirectoryState,
        store: OfficeStore,
        metrics: OfficeMetrics,
        suite: Suite = Suite.CLASSIC,
        clock: Clock = now_ms,
    ) -> None:
        self.office = office
        self.identity = identity
        self.directory = directory
        self.store = store
        self.suite = suite
        self.clock = clock
        self.metrics = metrics  # observability: hooks marked "# metrics"
        self._inbox_changed = asyncio.Condition()
        self._outbox_ready = asyncio.Event()
        self.connected = asyncio.Event()
        self.transport: Transport | None = None
        self.attachments = OfficeAttachments(office, store, lambda: self.transport, clock)
        self.heads = HeadBook(store, metrics, clock)  # the log's heads this office saw (ADR 0013)

    # --- sending ---------------------------------------------------------------------

    async def send(self, req: SendRequest, agency: str = "") -> SendResult:
        """Seal, store durably, answer ACCEPTED. Publishing happens behind the reply."""
        directory = self.directory.directory
        # Recipients and body size are checked by seal() (exchange.core.seal), once; the
        # body is encoded once, and the bytes sealed are the bytes stored.
        body = EncodedBody.of(await self.attachments.with_uploads(req.body, req.attachments))
        now = self.clock()
        ttl = req.ttl_s or directory.limits.max_ttl_s
        envelope = seal(
            body,
            sender=self.office,
            sender_keys=self.identity.all_signing_keys(),
            recipients=req.recipients,
            directory=directory,
            suite=self.suite,
            now_ms=now,
            ttl_s=min(ttl, directory.limits.max_ttl_s),
            case_id=req.case_id,
            in_reply_to=req.in_reply_to,
            handling=req.handling,
        )
        ctx = envelope.header.context
        header_digest = primitives.sha256(envelope.header_bytes)
        accepted = self._sign(
            Receipt(
                message_id=ctx.message_id,
                state=ReceiptState.ACCEPTED,
                signer=self.office,
                at_ms=now,
                header_digest=header_digest,
                sender=self.office,
            )
        )
        record = SentRecord(
            message_id=ctx.message_id,
            created_ms=ctx.created_ms,
            kind=int(ctx.kind),
            priority=int(ctx.priority),
            case_id=ctx.case_id,
            recipients=ctx.recipients,
            header_digest=header_digest,
            body=body.data,
            idempotency_key=req.idempotency_key or None,
        )
        frame = Frame(msg_id=ctx.message_id, priority=int(ctx.priority), payload=encode_frame(envelope))
        statement = _statement_record(accepted, recipient="", state=ReceiptState.ACCEPTED)
        message_id = await self.store.record_sent(record, statement, frame)
        self._outbox_ready.set()
        self.metrics.on_sent()  # metrics
        log.info(
            "accepted",
            message_id=message_id,
            kind=ctx.kind.label,
            recipients=len(ctx.recipients),
            agency=agency,
        )
        return SendResult(message_id, accepted if message_id == ctx.message_id else None)

    def _sign(self, statement: Receipt | Rejection) -> SignedStatement:
        directory = self.directory.directory
        keys = self.identity.signing_keys_for(directory.office(self.office), self.suite, self.clock())
        return sign_statement(statement, keys)

    async def publish_loop(self, transport: Transport) -> None:
        """Publish the out-queue to the gateway, oldest-highest-priority first, forever."""
        subject = out_subject(self.office)
        while True:
            raise_if_cancelling()
            frames = await asyncio.to_thread(self.store.pending_frames, PUBLISH_BATCH)
            if not frames:
                self._outbox_ready.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._outbox_ready.wait(), timeout=PUBLISH_RETRY_S)
                continue
            try:
                await transport.publish_many(
                    [OutboundMessage(subject, f.payload, f.msg_id, f.priority) for f in frames]
                )
            except LiaisonError as e:
                log.warning("publish_failed", error=str(e), pending=len(frames))
                await asyncio.sleep(PUBLISH_RETRY_S)
                continue
            await self.store.mark_published([f.seq for f in frames])

    # --- receiving -------------------------------------------------------------------

    async def handle_inbound(self, item: Delivered) -> None:
        """Handle one frame from this office's inbox; returns only after a durable write."""
        try:
            frame = decode_frame(item.payload)
            if isinstance(frame, Routed):
                await self._deliver(frame)
            elif isinstance(frame, SignedStatement):
                await self._record_statement(frame)
            else:
                raise SignatureError("an unrouted envelope arrived without the gateway's stamp")
        except MissingKeyError as e:
            # Mail to a rotated key this node's keystore does not hold yet: retried (NATS
            # redelivers with back-off) until the operator restarts it with the new keys.
            log.warning("inbound_key_missing", error=str(e), seq=item.seq)
            raise
        except LiaisonError as e:
            if isinstance(e, AuditError):  # a stamp without a valid log proof: an alarm
                self.metrics.on_log_alarm("proof")  # metrics
                log.warning("log_proof_failed", error=str(e), seq=item.seq)
            self.metrics.on_refused(e.reason.label)  # metrics
            log.warning("inbound_refused", error=str(e), reason=e.reason.label, seq=item.seq)
            raise PermanentError(str(e)) from e

    async def handle_inbound_batch(self, items: Sequence[Delivered]) -> list[BaseException | None]:
        """A fetched batch, handled concurrently: its inbox writes share one commit, in order."""
        results = await asyncio.gather(*(self.handle_inbound(item) for item in items), return_exceptions=True)
        return [r if isinstance(r, BaseException) else None for r in results]

    async def _deliver(self, routed: Routed) -> None:
        directory = self.directory.directory
        now = self.clock()
        stamp = verify_statement(routed.stamp, directory=directory, now_ms=now)
        envelope = routed.envelope
        ctx = envelope.header.context
        digest = primitives.sha256(envelope.header_bytes)
        proof = routed.stamp.proof
        check_stamp(stamp, message_id=ctx.message_id, header_digest=digest, directory=directory, proof=proof)
        opened = open_envelope(
            envelope, me=self.office, my_keys=self.identity.encryption_keys(), directory=directory, now_ms=now
        )
        delivered = self._sign(
            Receipt(
                message_id=ctx.message_id,
                state=ReceiptState.DELIVERED,
                signer=self.office,
                at_ms=now,
                header_digest=digest,
                sender=ctx.sender,
                recipient=self.office,
                log_index=stamp.log_index,
            )
        )
        record = InboxRecord(
            message_id=ctx.message_id,
            sender=ctx.sender,
            recipients=ctx.recipients,
            kind=int(ctx.kind),
            priority=int(ctx.priority),
            case_id=ctx.case_id,
            in_reply_to=ctx.in_reply_to,
            created_ms=ctx.created_ms,
            delivered_ms=now,
            log_index=stamp.log_index,
            header_digest=digest,
            body=opened.body_bytes,  # stored as decrypted: decoded once, in open_envelope
        )
        frame = Frame(
            msg_id=delivered_msg_id(ctx.message_id, self.office),
            priority=int(ctx.priority),
            payload=encode_frame(delivered),
        )
        # No await before this write: the handlers of one batch reach it in stream order.
        cursor = await self.store.record_delivery(record, frame)
        assert proof is not None  # check_stamp refuses a stamp without one
        await self.heads.observe(proof, message_id=ctx.message_id)
        if cursor is None:
            self.metrics.on_duplicate()  # metrics
            log.info("duplicate_dropped", message_id=ctx.message_id)
            return
        self.metrics.on_delivered(ctx.created_ms, now)  # metrics
        self._outbox_ready.set()
        log.info("delivered", message_id=ctx.message_id, sender=ctx.sender, cursor=cursor)
        async with self._inbox_changed:
            self._inbox_changed.notify_all()

    async def _record_statement(self, signed: SignedStatement) -> None:
        directory = self.directory.directory
        statement = verify_statement(signed, directory=directory, now_ms=self.clock())
        sent = await asyncio.to_thread(self.store.sent, statement.message_id)
        facts = SentMessage(sent.recipients, sent.header_digest, sent.created_ms) if sent else None
        check_statement(statement, office=self.office, sent=facts, directory=directory, proof=signed.proof)
        if (
            signed.proof is not None
            and isinstance(statement, Receipt)
            and statement.state is ReceiptState.STAMPED
        ):
            await self.heads.observe(signed.proof, message_id=statement.message_id)
        if isinstance(statement, Rejection):
            if sent is None:
                # Something under this office's name that this node never sent (a replayed
                # or forged envelope): keep the gateway's verdict where GetStatus shows it.
                log.warning("rejection_for_unknown_message", message_id=statement.message_id)
            record = StatementRecord(
                statement.message_id,
                "",
                REJECTED,
                int(statement.reason),
                statement.detail,
                statement.at_ms,
                encode_signed_statement(signed),
            )
            await self.store.record_statement(record)
            return
        await self.store.record_statement(
            _statement_record(signed, recipient=statement.recipient, state=statement.state)
        )

    # --- agency API --------------------------------------------------------------------

    async def subscribe(self, after_cursor: int, include_read: bool) -> AsyncIterator[Delivery]:
        """Every inbox message after ``after_cursor``, then new ones as they arrive."""
        cursor = after_cursor
        while True:
            batch = await asyncio.to_thread(self.store.inbox_after, cursor, include_read=include_read)
            for rec in batch:
                cursor = rec.cursor
                yield _delivery(rec)
            if not batch:
                async with self._inbox_changed:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._inbox_changed.wait(), timeout=1.0)

    async def acknowledge(self, message_id: str) -> SignedStatement:
        rec = await asyncio.to_thread(self.store.inbox_message, message_id)
        if rec is None:
            raise NotFoundError(f"message {message_id} is not in this office's inbox")
        now = self.clock()
        read = self._sign(
            Receipt(
                message_id=message_id,
                state=ReceiptState.READ,
                signer=self.office,
                at_ms=now,
                header_digest=rec.header_digest,
                sender=rec.sender,
                recipient=self.office,
                log_index=rec.log_index,
            )
        )
        frame = Frame(
            msg_id=read_msg_id(message_id, self.office), priority=rec.priority, payload=encode_frame(read)
        )
        if await self.store.mark_read(message_id, now, frame):
            self._outbox_ready.set()
            log.info("read", message_id=message_id)
        return read

    async def status(self, message_id: str) -> MessageStatus:
        """The receipt chain of a message this office sent, per recipient (store reads off the loop)."""
        return await asyncio.to_thread(self._status, message_id)

    def _status(self, message_id: str) -> MessageStatus:
        """``status``, run in a worker thread.

        A REPLAY rejection of a message the gateway had stamped is this node's own
        retry after a crash, not a refusal: it does not count. A rejection of a
        message this node has no record of (something sent under its name
        elsewhere) is still shown.
        """
        sent = self.store.sent(message_id)
        records = self.store.statements(message_id)
        if sent is None and not records:
            raise NotFoundError(f"message {message_id} was not sent by this office")
        stamped = any(s.state == ReceiptState.STAMPED for s in records)
        rejection = next(
            (s for s in records if s.state == REJECTED and not (stamped and s.reason == Reason.REPLAY)), None
        )
        recipients = []
        for r in sent.recipients if sent else ("",):
            states = [s.state for s in records if s.state != REJECTED and s.recipient in ("", r)]
            recipients.append(
                RecipientStatus(
                    recipient=r,
                    state=ReceiptState(max(states)) if states else None,
                    rejection=Reason(rejection.reason) if rejection else None,
                    detail=rejection.detail if rejection else "",
                )
            )
        return MessageStatus(
            message_id=message_id,
            recipients=tuple(recipients),
            statements=tuple(decode_signed_statement(s.signed) for s in records),
            rejected=rejection is not None,
        )

    def offices(self) -> OfficeList:
        d = self.directory.directory
        return OfficeList(
            directory_version=d.version,
            self_id=self.office,
            offices=tuple(
                OfficeInfo(
                    o.id, o.country, o.agency, o.city, o.display_name, d.kinds_allowed(self.office, o.id)
                )
                for o in d.offices
            ),
        )

    async def case(self, case_id: str) -> list[CaseEntry]:
        """Every message of a case this office sent or received, oldest first (off the loop)."""
        return await asyncio.to_thread(self._case, case_id)

    def _case(self, case_id: str) -> list[CaseEntry]:
        sent, received = self.store.case(case_id)
        entries = [
            CaseEntry(
                s.message_id, self.office, s.recipients, Kind(s.kind), s.created_ms, decode_body(s.body), True
            )
            for s in sent
        ] + [
            CaseEntry(
                r.message_id, r.sender, r.recipients, Kind(r.kind), r.created_ms, decode_body(r.body), False
            )
            for r in received
        ]
        if not entries:
            raise NotFoundError(f"no message of case {case_id!r} at this office")
        return sorted(entries, key=lambda e: (e.created_ms, e.message_id))

    # --- directory -------------------------------------------------------------------

    async def apply_directory(self, data: bytes) -> None:
        current = self.directory.current
        try:
            signed = self.directory.apply(data)
        except LiaisonError as e:
            if current is not None and current.to_bytes() == data:
                return
            log.warning("directory_refused", error=str(e))
            return
        await self.store.save_directory(signed.version, data)
        log.info("directory_applied", version=signed.version)

    # --- running ---------------------------------------------------------------------

    async def run(self, transport: Transport) -> None:
        """Publish, consume and follow the directory until cancelled."""
        self.transport = transport
        self.connected.set()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(transport.watch_directory(self.apply_directory))
            tg.create_task(self.publish_loop(transport))
            tg.create_task(
                transport.consume(
                    IN_STREAM,
                    office_durable(self.office),
                    in_subject(self.office),
                    self.handle_inbound_batch,
                    batch=INBOX_BATCH,
                    ack_wait=OFFICE_INBOX_ACK_WAIT_S,
                    max_deliver=OFFICE_INBOX_MAX_DELIVER,
                    create=False,  # the gateway creates it (ADR 0011)
                )
            )


def _statement_record(signed: SignedStatement, *, recipient: str, state: ReceiptState) -> StatementRecord:
    s = signed.statement
    return StatementRecord(
        s.message_id, recipient, int(state), 0, "", s.at_ms, encode_signed_statement(signed)
    )


def _delivery(rec: InboxRecord) -> Delivery:
    return Delivery(
        cursor=rec.cursor,
        message_id=rec.message_id,
        sender=rec.sender,
        recipients=rec.recipients,
        kind=Kind(rec.kind),
        priority=Priority(rec.priority),
        case_id=rec.case_id,
        in_reply_to=rec.in_reply_to,
        created_ms=rec.created_ms,
        delivered_ms=rec.delivered_ms,
        body=decode_body(rec.body),
        log_index=rec.log_index,
        read=rec.read_ms is not None,
    )
