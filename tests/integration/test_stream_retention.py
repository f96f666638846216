"""Work-queue retention on LIAISON_OUT / LIAISON_IN against a real nats-server (ADR 0006).

Covers: a frame is removed once its consumer acked it and waits while no consumer
exists; overlapping consumers are refused; JetStream dedup after the first copy was
removed (holds while the server runs, is lost after a server restart: the nodes'
own dedup by message id must catch that copy); replacing a limits-retention stream
of an older version only when everything in it was acknowledged. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import nats.js.errors
import pytest
from nats.js import api

from exchange.core.errors import ConfigError, TransportError
from exchange.core.wire import (
    IN_STREAM,
    OUT_FILTER,
    OUT_STREAM,
    gateway_durable,
    in_subject,
    office_durable,
    out_subject,
)
from exchange.nats.transport import BatchHandler, Delivered, Transport
from liaison.natsserver import NatsServer
from tests.integration.aioutil import WAIT, each, running

ConnectTransport = Callable[..., Awaitable[Transport]]


async def _until(predicate: Callable[[], Awaitable[bool]], within: float = WAIT) -> None:
    async def poll() -> None:
        while not await predicate():  # noqa: ASYNC110 - polling server state
            await asyncio.sleep(0.05)

    await asyncio.wait_for(poll(), timeout=within)


async def _messages(t: Transport, stream: str) -> int:
    return (await t.js.stream_info(stream)).state.messages


def _collect(into: list[str]) -> BatchHandler:
    async def handler(d: Delivered) -> None:
        into.append(d.msg_id or "")

    return each(handler)


async def test_out_and_in_are_work_queues_emptied_by_acks(transport: Transport) -> None:
    for stream in (OUT_STREAM, IN_STREAM):
        assert (await transport.js.stream_info(stream)).config.retention == api.RetentionPolicy.WORK_QUEUE
    # Frames published before any consumer exists wait for it (an office not yet started).
    for i in range(20):
        await transport.publish(in_subject("b"), b"x" * 1000, f"in-{i}", 2)
        await transport.publish(out_subject("a"), b"y" * 1000, f"out-{i}", 2)
    assert await _messages(transport, IN_STREAM) == 20
    assert await _messages(transport, OUT_STREAM) == 20

    got_in: list[str] = []
    got_out: list[str] = []
    async with (
        running(transport.consume(IN_STREAM, office_durable("b"), in_subject("b"), _collect(got_in))),
        running(transport.consume(OUT_STREAM, gateway_durable("a"), out_subject("a"), _collect(got_out))),
    ):

        async def empty() -> bool:
            return await _messages(transport, IN_STREAM) == 0 and await _messages(transport, OUT_STREAM) == 0

        await _until(empty)
    assert sorted(got_in) == sorted(f"in-{i}" for i in range(20))
    assert sorted(got_out) == sorted(f"out-{i}" for i in range(20))
    for stream in (OUT_STREAM, IN_STREAM):
        state = (await transport.js.stream_info(stream)).state
        assert (state.messages, state.bytes, state.last_seq) == (0, 0, 20)


async def test_overlapping_consumers_are_refused(transport: Transport) -> None:
    await transport.ensure_consumer(OUT_STREAM, gateway_durable("a"), out_subject("a"))
    await transport.ensure_consumer(OUT_STREAM, "gateway-b", out_subject("b"))  # disjoint: fine
    await transport.ensure_consumer(
        OUT_STREAM, gateway_durable("a"), out_subject("a")
    )  # same again: idempotent
    with pytest.raises(TransportError, match="gateway-all"):
        await transport.ensure_consumer(OUT_STREAM, "gateway-all", OUT_FILTER)


async def test_subjects_lists_only_frames_still_waiting(transport: Transport) -> None:
    """Gateway discovery of unknown offices reads subjects: a consumed subject drops out, a new one shows."""
    await transport.publish(out_subject("known"), b"1", "k-1", 1)
    await transport.publish(out_subject("stranger"), b"2", "s-1", 1)
    got: list[str] = []
    async with running(transport.consume(OUT_STREAM, "gateway-known", out_subject("known"), _collect(got))):

        async def consumed() -> bool:
            return await transport.subjects(OUT_STREAM, OUT_FILTER) == {out_subject("stranger"): 1}

        await _until(consumed)
    assert got == ["k-1"]


async def test_dedup_after_removal_holds_until_the_server_restarts(
    nats_server: NatsServer, transport: Transport, connect_transport: ConnectTransport
) -> None:
    """JetStream's duplicate table outlives the consumed copy, but not a server restart.

    Inside the window a repeat of a consumed id is answered duplicate=True with the first
    sequence and nothing is stored. After a restart the server rebuilds that table from the
    frames it still holds, so a consumed (removed) id is taken as new and delivered again;
    an id still waiting in the stream stays a duplicate. The nodes' dedup by message id
    (office store, gateway audit log) handles that second copy.
    """
    first = await transport.publish(out_subject("a"), b"frame", "m-1", 2)
    await transport.publish(out_subject("b"), b"frame", "m-2", 2)  # no consumer: stays
    got: list[str] = []
    async with running(transport.consume(OUT_STREAM, gateway_durable("a"), out_subject("a"), _collect(got))):

        async def removed() -> bool:
            return await transport.subjects(OUT_STREAM, out_subject("a")) == {}

        await _until(removed)
    again = await transport.publish(out_subject("a"), b"frame", "m-1", 2)
    assert (again.duplicate, again.seq) == (True, first.seq)
    assert await _messages(transport, OUT_STREAM) == 1  # only m-2

    await transport.close()
    nats_server.restart(kill=True)
    after = await connect_transport(nats_server, name="after-restart")
    copy = await after.publish(out_subject("a"), b"frame", "m-1", 2)
    assert not copy.duplicate, "a consumed id is new to JetStream after a restart"
    assert copy.seq > first.seq
    waiting = await after.publish(out_subject("b"), b"frame", "m-2", 2)
    assert waiting.duplicate
    got_again: list[str] = []
    async with running(
        after.consume(OUT_STREAM, gateway_durable("a"), out_subject("a"), _collect(got_again))
    ):

        async def redelivered() -> bool:
            return bool(got_again)

        await _until(redelivered)
    assert got_again == ["m-1"]


# --- streams of an older version (limits retention) -------------------------------------


async def _old_streams(t: Transport) -> None:
    """LIAISON_OUT and LIAISON_IN as versions before ADR 0006 created them (limits retention)."""
    for name, subject in ((OUT_STREAM, "liaison.v1.out.>"), (IN_STREAM, "liaison.v1.in.>")):
        await t.js.add_stream(
            api.StreamConfig(
                name=name,
                subjects=[subject],
                retention=api.RetentionPolicy.LIMITS,
                storage=api.StorageType.FILE,
                duplicate_window=120.0,
                discard=api.DiscardPolicy.NEW,
            )
        )


async def test_an_old_stream_fully_consumed_is_replaced(
    nats_server: NatsServer, connect_transport: ConnectTransport
) -> None:
    """Every frame acknowledged: the stream is recreated as a work queue; a running consumer carries on."""
    old = await connect_transport(nats_server, name="old", reconnect_time_wait=0.1)
    await _old_streams(old)
    got: list[str] = []
    office = running(
        old.consume(IN_STREAM, office_durable("b"), in_subject("b"), _collect(got), fetch_timeout=0.5)
    )
    async with office:
        for i in range(5):
            await old.publish(in_subject("b"), b"x", f"old-{i}", 1)

        async def delivered() -> bool:
            info = await old.js.consumer_info(IN_STREAM, office_durable("b"))
            return info.num_pending == 0 and info.num_ack_pending == 0

        await _until(delivered)
        assert await _messages(old, IN_STREAM) == 5  # limits retention keeps them all

        gateway = await connect_transport(nats_server, name="gateway")
        await gateway.ensure_streams()
        for stream in (OUT_STREAM, IN_STREAM):
            info = await gateway.js.stream_info(stream)
            assert info.config.retention == api.RetentionPolicy.WORK_QUEUE
            assert info.state.messages == 0
        assert (await gateway.js.stream_info(OUT_STREAM)).config.subjects == ["liaison.v1.out.>"]
        await gateway.ensure_streams()  # idempotent on the new streams

        # Sequences are not handed out twice (the gateway's redelivery check relies on them).
        ack = await gateway.publish(in_subject("b"), b"x", "new-1", 1)
        assert ack.seq == 6

        # The office's consume loop recreates its deleted consumer and receives new frames.

        async def got_new() -> bool:
            return "new-1" in got

        await _until(got_new)
        await _until_empty(gateway, IN_STREAM)
    assert sorted(got) == sorted([*(f"old-{i}" for i in range(5)), "new-1"])


async def _until_empty(t: Transport, stream: str) -> None:
    async def empty() -> bool:
        return await _messages(t, stream) == 0

    await _until(empty)


@pytest.mark.parametrize(
    ("case", "consume_first"),
    [
        pytest.param("no consumer for a subject", False, id="never-consumed"),
        pytest.param("consumer behind", True, id="consumer-behind"),
    ],
)
async def test_an_old_stream_with_unacknowledged_frames_is_kept(
    nats_server: NatsServer, connect_transport: ConnectTransport, case: str, consume_first: bool
) -> None:
    """Frames no consumer acknowledged: refuse with one line naming stream, subjects and remedy."""
    old = await connect_transport(nats_server, name="old")
    await _old_streams(old)
    await old.publish(out_subject("a"), b"x", "a-1", 1)
    await old.publish(out_subject("a"), b"x", "a-2", 1)
    if consume_first:
        # A consumer that read one frame and never acked the second: still behind.
        await old.ensure_consumer(OUT_STREAM, gateway_durable("a"), out_subject("a"))
        sub = await old.js.pull_subscribe_bind(durable=gateway_durable("a"), stream=OUT_STREAM)
        msgs = await sub.fetch(1, timeout=5)
        await msgs[0].ack_sync()
    gateway = await connect_transport(nats_server, name="gateway")
    with pytest.raises(ConfigError) as raised:
        await gateway.ensure_streams()
    message = str(raised.value)
    assert "\n" not in message
    assert f"stream {OUT_STREAM} was created by an older Liaison with limits retention" in message
    assert out_subject("a") in message
    assert f"nats stream rm {OUT_STREAM}" in message
    # Nothing was touched: same retention, same subjects, the frames are still there and
    # publishing works again (the freeze was undone).
    info = await gateway.js.stream_info(OUT_STREAM)
    assert info.config.retention == api.RetentionPolicy.LIMITS, case
    assert info.config.subjects == ["liaison.v1.out.>"]
    assert info.state.messages == 2
    ack = await old.publish(out_subject("a"), b"x", "a-3", 1)
    assert (ack.stream, ack.duplicate) == (OUT_STREAM, False)
    if consume_first:  # the consumer survived, still behind by a-2 and the new a-3
        consumer = await gateway.js.consumer_info(OUT_STREAM, gateway_durable("a"))
        assert (consumer.num_pending, consumer.num_ack_pending) == (2, 0)


async def test_a_stream_left_frozen_by_a_crash_is_restored_or_replaced(
    nats_server: NatsServer, connect_transport: ConnectTransport
) -> None:
    """A gateway that died between freezing and deciding left the old stream on the parking subject."""
    t = await connect_transport(nats_server, name="gateway")
    await _old_streams(t)
    await t.publish(out_subject("a"), b"x", "a-1", 1)
    for name in (OUT_STREAM, IN_STREAM):
        config = (await t.js.stream_info(name)).config
        config.subjects = [f"liaison.v1.retired.{name}"]
        await t.js.update_stream(config)
    with pytest.raises(nats.js.errors.NoStreamResponseError):
        await t.js.publish(out_subject("a"), b"x", timeout=1)
    with pytest.raises(ConfigError, match=OUT_STREAM):
        await t.ensure_streams()  # OUT holds an unconsumed frame: restored, not replaced
    assert (await t.js.stream_info(OUT_STREAM)).config.subjects == ["liaison.v1.out.>"]
    assert (await t.js.stream_info(OUT_STREAM)).state.messages == 1
    await t.js.purge_stream(OUT_STREAM)  # the operator decides those frames may go
    await t.ensure_streams()
    for name in (OUT_STREAM, IN_STREAM):
        info = await t.js.stream_info(name)
        assert info.config.retention == api.RetentionPolicy.WORK_QUEUE
        assert info.config.subjects == [f"liaison.v1.{'out' if name == OUT_STREAM else 'in'}.>"]
