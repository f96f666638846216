"""The gateway node: the audit point every message passes.

I/O shell around ``gateway.decide``: consumes every office's out subject,
appends one audit record per decision (group-committed), countersigns,
routes to the recipients' inbox subjects with a proof that each message is
in the log (a tree head signed once per commit, ADR 0013), and acknowledges to NATS only
after the audit write and the routing publishes are durable. A frame the
gateway had accepted but not acknowledged before a crash is routed again
from its audit record (``Resume``), never audited twice.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace

import structlog

from exchange.core.bounds import MAX_DETAIL_LEN
from exchange.core.clock import Clock, now_ms
from exchange.core.codec.envelope import encode_frame
from exchange.core.directory import DirectoryState, SignedDirectory, verify_directory
from exchange.core.envelope import Envelope, Receipt, Rejection, Routed, SignedStatement
from exchange.core.errors import DirectoryError, LiaisonError, NotFoundError, StoreError, TransportError
from exchange.core.identity import OfficeIdentity
from exchange.core.model import Reason, ReceiptState, Suite, check_id
from exchange.core.seal import sign_statement
from exchange.core.wire import (
    IN_STREAM,
    OFFICE_INBOX_ACK_WAIT_S,
    OFFICE_INBOX_MAX_DELIVER,
    OUT_FILTER,
    OUT_STREAM,
    forwarded_msg_id,
    gateway_durable,
    in_subject,
    office_durable,
    office_of_out_subject,
    out_subject,
    rejected_msg_id,
    routed_msg_id,
    stamped_msg_id,
)
from exchange.nats.attachments import ensure_attach_stream
from exchange.nats.transport import Delivered, OutboundMessage, Transport
from exchange.runtime.dirstore import publish_newest
from gateway.audit.codec import (
    decode_record,
    decode_signature,
    decode_signed_tree_head,
    encode_signature,
    encode_signed_tree_head,
    encode_tree_head,
)
from gateway.audit.query import AuditFilter, StoredEntry
from gateway.audit.record import AuditRecord, Verdict
from gateway.audit.store import AuditStore
from gateway.audit.treehead import (
    Cosignature,
    SignedTreeHead,
    TreeHead,
    sign_tree_head,
    verify_cosignature,
)
from gateway.decide import Accepted, Decision, Forward, InFlight, Prior, Refused, Resume, decide
from gateway.metrics import GatewayMetrics
from gateway.proofs import Committed, LogProver
from gateway.writer import AuditWriter, RecordRefusedError

__all__ = ["GatewayNode"]

log = structlog.get_logger()

# How often the gateway looks for out subjects it does not consume yet (new or unknown offices).
DISCOVERY_S = 2.0
CONSUME_BATCH = 256
# Frames handed to a gateway that died before acking come back after this long.
ACK_WAIT_S = 10.0
# Audit entries read per page when looking up the records of one message id.
LOOKUP_PAGE = 64
# A frame whose handling failed this many times (its own fault, not an outage) is parked.
POISON_ATTEMPTS = 5
MAX_TRACKED_FAILURES = 10_000


class GatewayNode:
    def __init__(
        self,
        *,
        gateway: str,
        identity: OfficeIdentity,
        directory: DirectoryState,
        store: AuditStore,
        metrics: GatewayMetrics,
        clock: Clock = now_ms,
        tree_head_interval_s: float = 2.0,
        stream_replicas: int = 1,
        save_directory: Callable[[SignedDirectory], None] = lambda _: None,
    ) -> None:
        self.gateway = gateway
        self.save_directory = save_directory  # every directory accepted, before it is used
        self.identity = identity
        self.directory = directory
        self.store = store
        self.clock = clock
        self.tree_head_interval_s = tree_head_interval_s
        self.stream_replicas = stream_replicas
        self.metrics = metrics  # observability: hooks marked "# metrics"
        self.prover = LogProver(store, gateway, identity, clock)
        self._writer = AuditWriter(store, self.metrics, self.prover.prove_commit)
        self.metrics.watch_writer(lambda: self._writer.pending)  # metrics
        self._accepting: set[str] = set()
        self._receipts_in_flight: set[tuple[str, int, str]] = set()
        # Frames whose handling failed (not a store or NATS outage): (subject, seq) -> (count, error).
        self._failures: dict[tuple[str, int], tuple[int, str]] = {}
        self._transport: Transport | None = None
        self.ready = asyncio.Event()
        self._head_lock = threading.Lock()

    # --- decisions ---------------------------------------------------------------------

    def _entries_of(self, message_id: str, verdict: Verdict) -> Iterator[StoredEntry]:
        """The audit entries of one message id with ``verdict``, oldest first.

        The store plans such a query by the message id index (``gateway.audit.store``), so
        its cost does not grow with the log.
        """
        token: str | None = None
        while True:
            page = self.store.query(
                AuditFilter(message_id=message_id, verdict=verdict.label),
                page_size=LOOKUP_PAGE,
                page_token=token,
                oldest_first=True,
            )
            yield from page.records
            token = page.next_page_token
            if token is None:
                return

    def _prior(self, message_id: str) -> Prior | None:
        stored = next(self._entries_of(message_id, Verdict.ACCEPTED), None)
        if stored is None:
            return None
        record = decode_record(stored.entry)
        return Prior(stored.index, record.sender, record.recipients, record.header_digest, record.source_seq)

    async def handle(self, item: Delivered) -> None:
        """One frame from an office; returns after its audit record and routing are durable."""
        office = office_of_out_subject(item.subject)
        directory = self.directory.directory
        now = self.clock()

        def lookup(message_id: str) -> Prior | InFlight | None:
            if message_id in self._accepting:
                return InFlight(message_id)  # a concurrent handler's record is not durable yet
            return self._prior(message_id)

        # Decided inline (not in a thread) so that concurrent handlers of one batch reach
        # the audit writer in stream order: per-sender order survives the gateway.
        decision = decide(
            item.payload,
            from_office=office,
            directory=directory,
            now_ms=now,
            prior=lookup,
            source_seq=item.seq,
            stored_ms=item.stored_ms,
        )
        try:
            await self._dispatch(decision, now)
        except RecordRefusedError as e:
            # The store took the other records of the commit and refused this one: the
            # frame fails alone, as an audited rejection, instead of coming back for ever.
            await self._refuse(_store_refused(decision, e, office, item, now), now)

    async def _dispatch(self, decision: Decision, now: int) -> None:
        if isinstance(decision, Accepted):
            await self._accept(decision.envelope, decision.record)
        elif isinstance(decision, Resume):
            self.metrics.on_resumed()  # metrics
            log.info("resumed", message_id=decision.envelope.header.context.message_id)
            await self._route(
                decision.envelope, decision.prior.header_digest, decision.prior.log_index, now, None
            )
        elif isinstance(decision, Refused):
            await self._refuse(decision, now)
        elif isinstance(decision, Forward):
            r = decision.receipt
            key = (r.message_id, int(r.state), r.signer)
            # A receipt frame seen again (redelivery after a lost ack, an office's republish)
            # is forwarded again but audited once: the log is looked up, and so are the
            # receipts of this batch still being written.
            if key not in self._receipts_in_flight:
                self._receipts_in_flight.add(key)  # before any await: a twin in this batch only forwards
                try:
                    # Inline like the prior lookup: one indexed read costs less than a thread hop.
                    if not self._receipt_audited(*key):
                        index = (await self._writer.append(decision.record)).index
                        self.metrics.on_receipt(r.state.name)  # metrics
                        log.info(
                            "receipt",
                            message_id=r.message_id,
                            state=r.state.name,
                            signer=r.signer,
                            log_index=index,
                        )
                finally:
                    self._receipts_in_flight.discard(key)
            await self._publish(
                [
                    _out(
                        decision.to,
                        _forwarded(decision.signed),
                        forwarded_msg_id(
                            decision.receipt.message_id, decision.receipt.state.name, decision.receipt.signer
                        ),
                        2,
                    )
                ]
            )

    async def handle_batch(self, items: Sequence[Delivered]) -> list[BaseException | None]:
        """A fetched batch, handled concurrently: its audit records share one commit."""
        results = await asyncio.gather(
            *(self.metrics.timed(self._handle_or_park(item)) for item in items),  # metrics: latency
            return_exceptions=True,
        )
        return [r if isinstance(r, BaseException) else None for r in results]

    async def _handle_or_park(self, item: Delivered) -> None:
        """``handle``, unless the frame failed POISON_ATTEMPTS times already: then it is parked.

        Only failures of the frame's own handling count (a bug its bytes trigger), not a
        store or NATS outage: those leave every frame in JetStream until they are over.
        Parking writes a dead-letter audit record (rejected, malformed, its out-stream
        sequence and size) and acknowledges the frame: no frame is retried for ever.
        """
        key = (item.subject, item.seq)
        failures = self._failures.get(key)
        if failures is not None and failures[0] >= POISON_ATTEMPTS:
            await self._park(item, *failures)
            del self._failures[key]
            return
        try:
            await self.handle(item)
        except (StoreError, TransportError, DirectoryError):
            raise  # an outage or no directory yet: every frame waits, none is this frame's fault
        except Exception as e:
            if len(self._failures) < MAX_TRACKED_FAILURES:
                count = failures[0] + 1 if failures else 1
                self._failures[key] = (count, type(e).__name__)
            log.warning("frame_failed", seq=item.seq, subject=item.subject, error_type=type(e).__name__)
            raise
        self._failures.pop(key, None)

    async def _park(self, item: Delivered, attempts: int, error_type: str) -> None:
        office = office_of_out_subject(item.subject)
        record = AuditRecord(
            at_ms=self.clock(),
            verdict=Verdict.REJECTED,
            sender=_record_sender(office),
            envelope_size=len(item.payload),
            reason=Reason.MALFORMED,
            detail=f"frame parked after {attempts} failed attempts ({error_type})",
            source_seq=item.seq,
        )
        index = (await self._writer.append(record)).index
        self.metrics.on_rejected(Reason.MALFORMED.label)  # metrics
        log.error("frame_parked", seq=item.seq, office=record.sender, attempts=attempts, log_index=index)

    def check_store_writes(self) -> None:
        """Raise while audit appends fail (for health checks): the gateway is not accepting."""
        if self._writer.failure is not None:
            raise StoreError(f"audit store cannot be written: {self._writer.failure}")

    def _receipt_audited(self, message_id: str, state: int, signer: str) -> bool:
        for stored in self._entries_of(message_id, Verdict.RECEIPT):
            record = decode_record(stored.entry)
            if (
                record.receipt_state is not None
                and int(record.receipt_state) == state
                and record.receipt_signer == signer
            ):
                return True
        return False

    async def _accept(self, envelope: Envelope, record: AuditRecord) -> None:
        message_id = envelope.header.context.message_id
        self._accepting.add(message_id)
        try:
            committed = await self._writer.append(record)
        finally:
            self._accepting.discard(message_id)
        self.metrics.on_accepted()  # metrics
        log.info("accepted", message_id=message_id, sender=record.sender, log_index=committed.index)
        await self._route(envelope, record.header_digest, committed.index, record.at_ms, committed)

    async def _route(
        self, envelope: Envelope, header_digest: bytes, index: int, at_ms: int, committed: Committed | None
    ) -> None:
        """Stamp with the digest decide() computed (not hashed again) and route to every recipient.

        Each copy carries the proof that the record is in the log, linked by a consistency
        proof to the last head this gateway showed that office (ADR 0013). ``committed`` is
        None when resuming a frame audited before a restart: it is proven afresh.
        """
        c = envelope.header.context
        if committed is None or committed.head is None:
            committed = await asyncio.to_thread(self.prover.prove_again, index)
        stamp = self._sign(
            Receipt(
                message_id=c.message_id,
                state=ReceiptState.STAMPED,
                signer=self.gateway,
                at_ms=at_ms,
                header_digest=header_digest,
                sender=c.sender,
                log_index=index,
            )
        )
        messages = [
            OutboundMessage(
                in_subject(r),
                encode_frame(Routed(envelope, replace(stamp, proof=self.prover.proof_for(r, committed)))),
                routed_msg_id(c.message_id, r),
                int(c.priority),
            )
            for r in c.recipients
        ]
        proven = replace(stamp, proof=self.prover.proof_for(c.sender, committed))
        messages.append(_out(c.sender, proven, stamped_msg_id(c.message_id), int(c.priority)))
        await self._publish(messages)

    async def _refuse(self, decision: Refused, now: int) -> None:
        index = (await self._writer.append(decision.record)).index
        r = decision.record
        reason = r.reason or Reason.MALFORMED
        self.metrics.on_rejected(reason.label)  # metrics
        log.warning(
            "rejected", message_id=r.message_id, sender=decision.notify, reason=reason.label, log_index=index
        )
        if not r.message_id or self.directory.directory.office(decision.notify) is None:
            return  # nothing the office could match the rejection to, or nobody to tell
        rejection = self._sign(
            Rejection(
                message_id=r.message_id,
                reason=reason,
                detail=r.detail,
                signer=self.gateway,
                at_ms=now,
                header_digest=r.header_digest,
                sender=decision.notify,
                log_index=index,
            )
        )
        await self._publish([_out(decision.notify, rejection, rejected_msg_id(r.message_id, index), 4)])

    def _sign(self, statement: Receipt | Rejection) -> SignedStatement:
        return sign_statement(statement, self.identity.signing_keys(Suite.CLASSIC))

    async def _publish(self, messages: list[OutboundMessage]) -> None:
        assert self._transport is not None
        await self._transport.publish_many(messages)

    # --- fair consumption ------------------------------------------------------------------

    async def _consume_every_office(self, transport: Transport, tg: asyncio.TaskGroup) -> None:
        """One durable consumer per sending office, so a flood from one cannot starve the others.

        Offices of the directory are consumed from the start; any other subject that
        shows up on the out stream (an office unknown to the directory) gets its own
        consumer too, so its frames are refused and audited, never left unread. Every
        office of the directory also gets its inbox consumer here: offices may not
        create consumers (a create request names its own deliver subject, ADR 0011).
        """
        consuming: set[str] = set()
        inboxes: set[str] = set()
        while True:
            offices = set(self.directory.directory.office_ids())
            for office in sorted(offices - inboxes):
                try:
                    await transport.ensure_consumer(
                        IN_STREAM,
                        office_durable(office),
                        in_subject(office),
                        max_deliver=OFFICE_INBOX_MAX_DELIVER,
                        ack_wait=OFFICE_INBOX_ACK_WAIT_S,
                    )
                    inboxes.add(office)
                except LiaisonError as e:
                    log.warning("inbox_consumer_failed", office=office, error=str(e))
            try:
                present = await transport.subjects(OUT_STREAM, OUT_FILTER)
                offices |= {office_of_out_subject(subject) for subject in present}
            except LiaisonError as e:
                log.warning("out_subjects_unreadable", error=str(e))
            for office in sorted(offices - consuming):
                consuming.add(office)
                tg.create_task(self._consume_office(transport, office))
            await asyncio.sleep(DISCOVERY_S)

    async def _consume_office(self, transport: Transport, office: str) -> None:
        limits = self.directory.directory.limits
        batch = CONSUME_BATCH
        if limits.sender_rate_per_s:
            # A batch must clear admission well within ack_wait.
            batch = max(
                1, min(batch, limits.sender_burst or limits.sender_rate_per_s, limits.sender_rate_per_s * 5)
            )
        bucket = _TokenBucket(self.directory, self.clock)

        async def handle(items: Sequence[Delivered]) -> list[BaseException | None]:
            await bucket.take(len(items))
            return await self.handle_batch(items)

        await transport.consume(
            OUT_STREAM,
            gateway_durable(office),
            out_subject(office),
            handle,
            batch=batch,
            ack_wait=ACK_WAIT_S,
            # Every frame ends as an audit record: a frame that keeps failing on its own is
            # parked by _handle_or_park (a dead-letter record); a store or NATS outage is
            # waited out (nothing is dropped by a delivery count while it lasts).
            max_deliver=-1,
        )

    # --- tree heads --------------------------------------------------------------------

    def sign_tree_head(self) -> SignedTreeHead:
        """Sign the log's current size and root, store it and return it (one head per size)."""
        with self._head_lock:  # the head loop and GetTreeHead may ask at once
            size = self.store.size()
            stored = self.store.tree_head(size)
            if stored is not None:
                return decode_signed_tree_head(stored)
            return self._sign_head(size)

    def _sign_head(self, size: int) -> SignedTreeHead:
        head = TreeHead(
            size=size, root=self.store.root(size), timestamp_ms=self.clock(), gateway=self.gateway
        )
        head_bytes = encode_tree_head(head)
        signed = SignedTreeHead(
            head, head_bytes, sign_tree_head(head, head_bytes, self.identity.signing_keys(Suite.HYBRID_PQ))
        )
        self.store.save_tree_head(size, encode_signed_tree_head(signed))
        return signed

    def tree_head(self, size: int = 0) -> SignedTreeHead:
        """The signed head of ``size`` (0: the current size, signed now if needed), with co-signatures."""
        if size:
            stored = self.store.tree_head(size)
            if stored is None:
                raise NotFoundError(f"no signed tree head for size {size}")
            head = decode_signed_tree_head(stored)
        else:
            head = self.sign_tree_head()
        cosignatures = tuple(
            Cosignature(witness, decode_signature(sig))
            for witness, sig in self.store.cosignatures(head.tree_head.size).items()
        )
        return replace(head, cosignatures=cosignatures)

    def add_cosignature(self, size: int, cosignature: Cosignature) -> None:
        """Store a witness's co-signature after checking it against the stored head bytes."""
        stored = self.store.tree_head(size)
        if stored is None:
            raise NotFoundError(f"no signed tree head for size {size}")
        verify_cosignature(decode_signed_tree_head(stored), cosignature, self.directory.directory)
        self.store.add_cosignature(size, cosignature.witness, encode_signature(cosignature.signature))
        self.metrics.on_cosigned(size)  # metrics
        log.info("cosigned", size=size, witness=cosignature.witness)

    async def tree_head_loop(self) -> None:
        last = -1
        while True:
            size = await asyncio.to_thread(self.store.size)
            if size != last:
                try:
                    await asyncio.to_thread(self.sign_tree_head)
                    last = size
                except LiaisonError as e:
                    log.warning("tree_head_failed", size=size, error=str(e))
            await asyncio.sleep(self.tree_head_interval_s)

    # --- directory ---------------------------------------------------------------------

    def signed_directory(self) -> bytes:
        current = self.directory.current
        assert current is not None
        return current.to_bytes()

    async def publish_directory(self, data: bytes) -> int:
        """Verify a directory update against the current one, save it, adopt it, hand it to the offices."""
        signed = verify_directory(data, trusted=self.directory.directory, anchor=None)
        await asyncio.to_thread(self.save_directory, signed)  # saved first: a restart keeps it
        self.directory.apply(data)
        if self._transport is not None:
            await publish_newest(self._transport, self.directory, self.save_directory)
        return signed.version

    # --- running -----------------------------------------------------------------------

    async def run(self, transport: Transport) -> None:
        self._transport = transport
        await transport.ensure_streams(replicas=self.stream_replicas)
        await ensure_attach_stream(transport, replicas=self.stream_replicas)
        # The newest of ours and the stream's, never ours over a newer one (ADR 0010).
        await publish_newest(transport, self.directory, self.save_directory)
        self.ready.set()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._writer.run())
            tg.create_task(self.tree_head_loop())
            tg.create_task(self._consume_every_office(transport, tg))


class _TokenBucket:
    """Per-sender admission from the directory's limits (rate 0 = unlimited); waits, never drops."""

    def __init__(self, directory: DirectoryState, clock: Clock) -> None:
        self._directory = directory
        self._clock = clock
        self._tokens = 0.0
        self._at = clock()

    async def take(self, n: int) -> None:
        while True:
            limits = self._directory.directory.limits
            rate = limits.sender_rate_per_s
            if not rate:
                return
            burst = float(limits.sender_burst or rate)
            now = self._clock()
            self._tokens = min(burst, self._tokens + (now - self._at) * rate / 1000)
            self._at = now
            if self._tokens >= n or (self._tokens >= burst and n > burst):
                self._tokens -= n
                return
            await asyncio.sleep(max(0.01, (min(n, burst) - self._tokens) / rate))


def _record_sender(office: str) -> str:
    """The subject's office token when it is an office id; a fixed marker otherwise."""
    try:
        return check_id(office, "office")
    except ValueError:
        return "invalid-subject"


def _store_refused(
    decision: Decision, error: RecordRefusedError, office: str, item: Delivered, now: int
) -> Refused:
    """The rejection that replaces a decision whose audit record the store refused: only checked fields."""
    record = decision.prior if isinstance(decision, Resume) else decision.record
    message_id = record.message_id if isinstance(record, AuditRecord) else ""
    fallback = AuditRecord(
        at_ms=now,
        verdict=Verdict.REJECTED,
        sender=_record_sender(office),
        message_id=message_id,
        envelope_size=len(item.payload),
        reason=Reason.MALFORMED,
        detail=str(error)[:MAX_DETAIL_LEN],
        source_seq=item.seq,
    )
    return Refused(error, fallback, office)


def _out(office: str, signed: SignedStatement, msg_id: str, priority: int) -> OutboundMessage:
    return OutboundMessage(in_subject(office), encode_frame(signed), msg_id, priority)


def _forwarded(signed: SignedStatement) -> SignedStatement:
    """A statement from an office, forwarded: only the gateway attaches log proofs."""
    return replace(signed, proof=None) if signed.proof is not None else signed
