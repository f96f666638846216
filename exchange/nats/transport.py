"""Thin async JetStream shell: streams, acknowledged publishes, a pull-consumer loop, the directory.

What it does: connects to NATS (reconnecting forever), creates/updates the three
Liaison streams, publishes opaque payloads with ``Nats-Msg-Id`` and
``Liaison-Priority`` headers and waits for the JetStream ack, runs a durable pull
consumer that acks a message only after the handler returned (the handler returns
only after its own durable write), and keeps the latest signed directory in the
``LIAISON_DIRECTORY`` stream (``max_msgs_per_subject=1``: the stream holds exactly
the newest directory; no KV bucket, so permissions stay on plain stream subjects).

What it does not do: it never parses, verifies or logs payloads (they are
serialized Frames built elsewhere), and it does not decide what is poison: the
handler raises ``PermanentError`` for that. Dedup here is JetStream's time-bound
window only; replay protection lives in the core.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import ssl
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import nats
import nats.errors
import nats.js.errors
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import api
from nats.js.client import JetStreamContext

from exchange.core.errors import TransportError
from exchange.core.wire import (
    DIRECTORY_STREAM,
    DIRECTORY_SUBJECT,
    DUPLICATE_WINDOW_S,
    HEADER_EXPECTED_LAST_SUBJECT_SEQ,
    HEADER_MSG_ID,
    HEADER_PRIORITY,
    IN_FILTER,
    IN_STREAM,
    OUT_FILTER,
    OUT_STREAM,
    STREAM_MAX_MSG_SIZE,
    check_outbound,
    parse_priority,
    publish_headers,
)
from exchange.nats.directory import DirectoryCallback, DirectoryStream
from exchange.nats.retention import migrate_to_work_queue
from exchange.nats.tasks import raise_if_cancelling

__all__ = [
    "BatchHandler",
    "Delivered",
    "DirectoryCallback",
    "OutboundMessage",
    "PermanentError",
    "PoisonCallback",
    "PubAck",
    "Transport",
    "connect",
    "raise_if_cancelling",
]

log = structlog.get_logger()

DEFAULT_REQUEST_TIMEOUT_S: Final = 5.0
MAX_NAK_DELAY_S: Final = 30.0
_RETRY_PAUSE_S: Final = 0.5
# How long stream creation waits for a forming cluster to place its replicas (err_code 10005).
STREAM_PLACEMENT_WAIT_S: Final = 60.0
_NO_PLACEMENT: Final = 10005


class PermanentError(Exception):
    """Raised by a consume handler for a message that can never succeed (poison): it is terminated."""


@dataclass(frozen=True, slots=True)
class PubAck:
    stream: str
    seq: int
    duplicate: bool


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    subject: str
    payload: bytes
    msg_id: str
    priority: int


@dataclass(frozen=True, slots=True)
class Delivered:
    payload: bytes = field(repr=False)
    subject: str
    headers: Mapping[str, str]
    seq: int
    num_delivered: int
    stored_ms: int = 0  # when JetStream stored it (its own clock, not the sender's claim)

    @property
    def msg_id(self) -> str | None:
        return self.headers.get(HEADER_MSG_ID)

    @property
    def priority(self) -> int:
        """``Liaison-Priority`` (1..4); a missing or malformed header counts as the lowest."""
        return parse_priority(self.headers.get(HEADER_PRIORITY))


# A batch handler gets a fetched batch (priority order) and returns one outcome per item:
# None (done: ack), PermanentError (poison: term) or another exception (retry: nak).
BatchHandler = Callable[[Sequence[Delivered]], Awaitable[Sequence[BaseException | None]]]
PoisonCallback = Callable[[Delivered, PermanentError], Awaitable[None]]


def _delivered(msg: Msg) -> Delivered:
    meta = msg.metadata
    return Delivered(
        payload=msg.data,
        subject=msg.subject,
        headers=dict(msg.headers or {}),
        seq=meta.sequence.stream,
        num_delivered=meta.num_delivered,
        stored_ms=int(meta.timestamp.timestamp() * 1000),  # the ack subject's stored-at nanoseconds
    )


def _stream_configs(max_age_s: float, max_bytes: int, replicas: int = 1) -> list[api.StreamConfig]:
    common: dict[str, Any] = {
        "num_replicas": replicas,
        "retention": api.RetentionPolicy.LIMITS,
        "storage": api.StorageType.FILE,
        "duplicate_window": DUPLICATE_WINDOW_S,
        "max_msg_size": STREAM_MAX_MSG_SIZE,
        "allow_direct": True,
    }
    # DiscardPolicy.NEW: a full stream refuses new publishes (the sender sees it) instead of
    # silently dropping accepted messages. Work-queue retention: a frame is removed once its
    # one consumer acked it (the durable records are the audit log and the office stores),
    # and waits while no consumer exists yet (ADR 0006).
    data = dict(
        common,
        retention=api.RetentionPolicy.WORK_QUEUE,
        max_age=max_age_s,
        max_bytes=max_bytes,
        discard=api.DiscardPolicy.NEW,
    )
    return [
        api.StreamConfig(name=OUT_STREAM, subjects=[OUT_FILTER], **data),
        api.StreamConfig(name=IN_STREAM, subjects=[IN_FILTER], **data),
        api.StreamConfig(
            name=DIRECTORY_STREAM,
            subjects=[DIRECTORY_SUBJECT],
            max_msgs_per_subject=1,
            discard=api.DiscardPolicy.OLD,
            **common,
        ),
    ]


async def connect(
    url: str | Sequence[str],
    name: str,
    *,
    tls: ssl.SSLContext | None = None,
    tls_hostname: str | None = None,
    user_credentials: str | None = None,
    nkeys_seed: str | None = None,
    user: str | None = None,
    password: str | None = None,
    inbox_prefix: str | None = None,
    domain: str | None = None,
    reconnect_time_wait: float = 0.5,
    connect_timeout: float = 5.0,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT_S,
) -> Transport:
    """Connect (bounded by ``connect_timeout`` for the first connection), then reconnect forever."""
    transport = Transport(name, request_timeout=request_timeout)
    options: dict[str, Any] = {
        "servers": [url] if isinstance(url, str) else list(url),
        "name": name,
        "allow_reconnect": True,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": reconnect_time_wait,
        "connect_timeout": connect_timeout,
        "error_cb": transport._on_error,
        "disconnected_cb": transport._on_disconnected,
        "reconnected_cb": transport._on_reconnected,
        "closed_cb": transport._on_closed,
    }
    for key, value in (
        ("tls", tls),
        ("tls_hostname", tls_hostname),
        ("user_credentials", user_credentials),
        ("nkeys_seed", nkeys_seed),
        ("user", user),
        ("password", password),
        ("inbox_prefix", inbox_prefix),
    ):
        if value is not None:
            options[key] = value
    try:
        await asyncio.wait_for(transport.nc.connect(**options), timeout=connect_timeout * 2)
    except (TimeoutError, OSError, nats.errors.Error) as e:
        with contextlib.suppress(Exception):
            await transport.nc.close()
        raise TransportError(f"cannot connect to NATS as {name!r}: {type(e).__name__}") from e
    transport.js = transport.nc.jetstream(domain=domain, timeout=request_timeout)
    server = transport.nc.connected_url.netloc if transport.nc.connected_url else None
    log.info("nats.connected", name=name, server=server)
    return transport


class Transport(DirectoryStream):
    """One NATS connection and its JetStream context. Build it with :func:`connect`."""

    def __init__(self, name: str, *, request_timeout: float = DEFAULT_REQUEST_TIMEOUT_S) -> None:
        self.name = name
        self.request_timeout = request_timeout
        self.nc = Client()
        self.js: JetStreamContext = self.nc.jetstream()
        self._wakeups: set[asyncio.Event] = set()
        # Bumped on every disconnect/reconnect: a batch fetched in an older epoch is stale.
        self._epoch = 0

    # --- connection callbacks (metadata only, never payloads) -------------------

    async def _on_error(self, e: Exception) -> None:
        log.warning("nats.error", name=self.name, error_type=type(e).__name__, error=str(e)[:300])

    async def _on_disconnected(self) -> None:
        self._epoch += 1
        log.warning("nats.disconnected", name=self.name)

    async def _on_reconnected(self) -> None:
        self._epoch += 1
        log.info("nats.reconnected", name=self.name)
        for event in self._wakeups:
            event.set()

    async def _on_closed(self) -> None:
        log.info("nats.closed", name=self.name)

    @property
    def is_connected(self) -> bool:
        return bool(self.nc.is_connected)

    async def close(self) -> None:
        """Drain (bounded) and close; never raises, even if the server is gone."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.nc.drain(), timeout=self.request_timeout)
        if not self.nc.is_closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.nc.close(), timeout=self.request_timeout)

    # --- streams ----------------------------------------------------------------

    async def ensure_streams(self, *, max_age_s: float = 0.0, max_bytes: int = -1, replicas: int = 1) -> None:
        """Create or update LIAISON_OUT, LIAISON_IN and LIAISON_DIRECTORY (idempotent).

        ``replicas`` > 1 needs a JetStream cluster (R3 in a three-server hub). An out or
        in stream of an older version (other retention) is replaced only if every frame
        in it was acknowledged, else ``ConfigError`` (``exchange.nats.retention``).
        """
        for config in _stream_configs(max_age_s, max_bytes, replicas):
            deadline = asyncio.get_running_loop().time() + STREAM_PLACEMENT_WAIT_S
            while True:
                try:
                    await self._ensure_stream(config)
                    break
                except nats.js.errors.APIError as e:
                    # A cluster still forming (a peer not up yet) cannot place R3 replicas:
                    # wait for it, bounded, instead of exiting at start.
                    if e.err_code != _NO_PLACEMENT or asyncio.get_running_loop().time() > deadline:
                        raise TransportError(f"cannot create or update stream {config.name}: {e}") from e
                    await asyncio.sleep(_RETRY_PAUSE_S)
                except (TimeoutError, nats.errors.Error) as e:
                    raise TransportError(f"cannot create or update stream {config.name}: {e}") from e

    async def _ensure_stream(self, config: api.StreamConfig) -> None:
        try:
            info = await self.js.stream_info(config.name or "")
        except nats.js.errors.NotFoundError:
            await self.js.add_stream(config)
        else:
            if info.config.retention != config.retention:
                await migrate_to_work_queue(self.js, info.config, config)
            else:
                await self.js.update_stream(config)

    async def subjects(self, stream: str, subjects_filter: str) -> dict[str, int]:
        """Subjects that hold messages in ``stream`` (matching the filter), with their counts."""
        try:
            info = await self.js.stream_info(stream, subjects_filter=subjects_filter)
        except (TimeoutError, nats.errors.Error) as e:
            raise TransportError(f"cannot read the subjects of {stream}: {type(e).__name__}") from e
        return dict(info.state.subjects or {})

    async def ensure_consumer(
        self, stream: str, durable: str, filter_subject: str, *, max_deliver: int = 10, ack_wait: float = 30.0
    ) -> None:
        """Create or update a durable explicit-ack pull consumer."""
        config = api.ConsumerConfig(
            name=durable,
            durable_name=durable,
            filter_subject=filter_subject,
            ack_policy=api.AckPolicy.EXPLICIT,
            deliver_policy=api.DeliverPolicy.ALL,
            ack_wait=ack_wait,
            max_deliver=max_deliver,
            max_ack_pending=4096,
        )
        try:
            await self.js.add_consumer(stream, config)
        except (TimeoutError, nats.errors.Error) as e:
            raise TransportError(f"cannot create consumer {durable} on {stream}: {e}") from e

    # --- publish ----------------------------------------------------------------

    async def publish(
        self,
        subject: str,
        payload: bytes,
        msg_id: str,
        priority: int,
        *,
        ack_timeout: float | None = None,
        after_seq: int | None = None,
    ) -> PubAck:
        """Publish and await the JetStream ack; a repeat of ``msg_id`` in the window gives ``duplicate``.

        ``after_seq``: stored only if the subject's last message is still that sequence (0: none).
        """
        check_outbound(subject, payload, msg_id, priority)
        headers = publish_headers(msg_id, priority)
        if after_seq is not None:
            headers[HEADER_EXPECTED_LAST_SUBJECT_SEQ] = str(after_seq)
        try:
            ack = await self.js.publish(
                subject, payload, timeout=ack_timeout or self.request_timeout, headers=headers
            )
        except (nats.errors.TimeoutError, TimeoutError) as e:
            raise TransportError(f"no JetStream ack for {subject} within timeout") from e
        except nats.js.errors.NoStreamResponseError as e:
            raise TransportError(f"no stream answers on {subject}") from e
        except nats.js.errors.APIError as e:
            raise TransportError(f"JetStream refused publish to {subject}: err_code={e.err_code}") from e
        except nats.errors.Error as e:
            raise TransportError(f"publish to {subject} failed: {type(e).__name__}") from e
        return PubAck(stream=ack.stream, seq=ack.seq, duplicate=bool(ack.duplicate))

    async def publish_many(self, items: Iterable[OutboundMessage], *, concurrency: int = 256) -> list[PubAck]:
        """Pipeline publishes (up to ``concurrency`` in flight) and await every ack, in input order.

        If any publish fails, all others still complete and the first error is raised;
        retrying the whole batch with the same ids is safe (dedup).
        """
        batch = list(items)
        for item in batch:
            check_outbound(item.subject, item.payload, item.msg_id, item.priority)
        gate = asyncio.Semaphore(concurrency)

        async def one(item: OutboundMessage) -> PubAck:
            async with gate:
                return await self.publish(item.subject, item.payload, item.msg_id, item.priority)

        results = await asyncio.gather(*(one(i) for i in batch), return_exceptions=True)
        acks: list[PubAck] = []
        for result in results:
            if isinstance(result, BaseException):
                failed = sum(isinstance(r, BaseException) for r in results)
                raise TransportError(f"{failed} of {len(batch)} publishes failed") from result
            acks.append(result)
        return acks

    # --- consume ----------------------------------------------------------------

    async def consume(
        self,
        stream: str,
        durable: str,
        filter_subject: str,
        handler: BatchHandler,
        *,
        batch: int = 64,
        max_deliver: int = 10,
        ack_wait: float = 30.0,
        nak_delay: float = 1.0,
        fetch_timeout: float = 2.0,
        on_poison: PoisonCallback | None = None,
        create: bool = True,
    ) -> None:
        """Fetch and handle messages until cancelled; survives disconnects and server restarts.

        ``create=False``: bind to a consumer the gateway creates (ADR 0011), waiting for it.

        The whole fetched batch goes to one ``handler`` call (so its durable writes can be
        grouped), higher ``Liaison-Priority`` first (stream order otherwise), and each item
        is settled by its returned outcome: None → ack; ``PermanentError`` → term +
        ``on_poison``; anything else → nak with a growing delay, and after ``max_deliver``
        attempts it is treated as poison too (never looping forever). A handler that raises
        fails the whole batch (retried). The acks of a batch are sent together and followed
        by one flush (not confirmed one by one).
        """
        sub: JetStreamContext.PullSubscription | None = None
        try:
            while True:
                raise_if_cancelling()
                try:
                    if sub is None and create:
                        await self.ensure_consumer(
                            stream, durable, filter_subject, max_deliver=max_deliver, ack_wait=ack_wait
                        )
                    if sub is None:
                        sub = await self.js.pull_subscribe_bind(durable=durable, stream=stream)
                    epoch = self._epoch
                    msgs = await sub.fetch(batch, timeout=fetch_timeout)
                except (nats.errors.TimeoutError, TimeoutError):
                    continue  # nothing to do: a normal outcome
                except (TransportError, nats.errors.Error, OSError) as e:
                    log.warning(
                        "nats.consume.retry", durable=durable, error_type=type(e).__name__, error=str(e)[:300]
                    )
                    await self._drop(sub)
                    sub = None
                    await asyncio.sleep(_RETRY_PAUSE_S)
                    continue
                items = sorted(
                    ((_delivered(m), m) for m in msgs), key=lambda dm: (-dm[0].priority, dm[0].seq)
                )
                await self._handle_batch(
                    items,
                    epoch=epoch,
                    handler=handler,
                    max_deliver=max_deliver,
                    nak_delay=nak_delay,
                    on_poison=on_poison,
                )
        finally:
            await self._drop(sub)

    @staticmethod
    async def _drop(sub: JetStreamContext.PullSubscription | None) -> None:
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _handle_batch(
        self,
        items: list[tuple[Delivered, Msg]],
        *,
        epoch: int,
        handler: BatchHandler,
        max_deliver: int,
        nak_delay: float,
        on_poison: PoisonCallback | None,
    ) -> None:
        try:
            outcomes = list(await handler([d for d, _ in items]))
        except asyncio.CancelledError:
            for _, pending in items:
                with contextlib.suppress(Exception):
                    await pending.nak()
            raise
        except Exception as e:  # noqa: BLE001 - the whole batch failed: retry it all
            outcomes = [e] * len(items)
        if len(outcomes) != len(items):
            raise TypeError("a batch handler must return one outcome per item")
        if self._epoch != epoch:
            # The connection dropped since the fetch: acks for these deliveries are not
            # answered by a restarted server. Leave them; the server redelivers after ack_wait.
            log.info("nats.consume.batch_abandoned", remaining=len(items))
            return
        done: list[tuple[Delivered, Msg]] = []
        for (delivered, msg), outcome in zip(items, outcomes, strict=True):
            if outcome is None:
                done.append((delivered, msg))
            else:
                await self._settle_failure(
                    msg, delivered, outcome, max_deliver=max_deliver, nak_delay=nak_delay, on_poison=on_poison
                )
        await self._ack_all(done)

    async def _ack_all(self, done: Sequence[tuple[Delivered, Msg]]) -> None:
        """Ack every handled message, then one PING/PONG: the acks have reached the server.

        Not ``ack_sync`` per message (a request/reply each): with explicit acks every
        message needs its own ack anyway, and a confirmation changes nothing here. An ack
        that is lost means a redelivery after ``ack_wait``, which every hop dedups by id.
        """
        for index, (delivered, msg) in enumerate(done):
            try:
                await msg.ack()
            except Exception as e:  # noqa: BLE001 - whatever broke the ack, the outcome is the same
                # The link is in trouble: the rest are left for redelivery too.
                log.warning(
                    "nats.consume.ack_unconfirmed",
                    seq=delivered.seq,
                    remaining=len(done) - index,
                    error_type=type(e).__name__,
                )
                return
        if done:
            try:
                await self.nc.flush(timeout=max(1, math.ceil(self.request_timeout)))
            except Exception as e:  # noqa: BLE001 - not confirmed: they may be redelivered
                log.warning("nats.consume.ack_unconfirmed", count=len(done), error_type=type(e).__name__)

    async def _settle_failure(
        self,
        msg: Msg,
        delivered: Delivered,
        error: BaseException,
        *,
        max_deliver: int,
        nak_delay: float,
        on_poison: PoisonCallback | None,
    ) -> None:
        """Term a poison message; nak anything else with a growing delay, up to ``max_deliver``."""
        if isinstance(error, PermanentError):
            await self._poison(msg, delivered, error, on_poison)
            return
        log.warning(
            "nats.consume.handler_failed",
            seq=delivered.seq,
            num_delivered=delivered.num_delivered,
            error_type=type(error).__name__,
        )
        if 0 < max_deliver <= delivered.num_delivered:
            reason = PermanentError(f"gave up after {delivered.num_delivered} deliveries")
            reason.__cause__ = error
            await self._poison(msg, delivered, reason, on_poison)
        else:
            delay = min(nak_delay * 2 ** (delivered.num_delivered - 1), MAX_NAK_DELAY_S)
            with contextlib.suppress(Exception):
                await msg.nak(delay=delay)

    async def _poison(
        self, msg: Msg, delivered: Delivered, error: PermanentError, on_poison: PoisonCallback | None
    ) -> None:
        log.error("nats.consume.poison", seq=delivered.seq, subject=delivered.subject, error=str(error)[:300])
        with contextlib.suppress(Exception):
            await msg.term()
        if on_poison is not None:
            try:
                await on_poison(delivered, error)
            except Exception as e:  # noqa: BLE001 - a failing callback must not stop the consumer
                # No traceback in the log: it could carry handler data.
                log.error("nats.consume.on_poison_failed", seq=delivered.seq, error_type=type(e).__name__)  # noqa: TRY400
