"""JetStream is a transport buffer: once traffic is delivered and acked, LIAISON_OUT and LIAISON_IN are empty.

A real lab (nats-server, gateway, three office processes) carries messages in
both directions with their receipts; once every message has reached READ, the
out and in streams must hold no frames and (almost) no bytes, while their
sequence numbers show what went through. Before ADR 0006 (limits retention)
they kept every frame until the server's store was full. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from exchange.client.sdk import Client
from exchange.core.model import ReceiptState
from exchange.core.wire import IN_STREAM, OUT_STREAM
from exchange.nats.transport import connect
from liaison.lab.lab import Lab
from tests.integration.labutil import INVENTORY, wait_for
from tests.integration.test_exchange import receive

RU, TJ, MIG = "ru-mvd-dushanbe", "tj-mvd-moscow", "tj-migration-moscow"
PER_SENDER = 15


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    lab = Lab(tmp_path_factory.mktemp("lab"), inventory=INVENTORY)
    with lab:
        yield lab


def _streams(lab: Lab) -> dict[str, tuple[int, int, int, int]]:
    """(messages, bytes, last sequence, frames still pending for a consumer) of the out and in streams."""
    assert lab.deployment is not None
    gateway = lab.deployment.inventory.gateway.id

    async def go() -> dict[str, tuple[int, int, int, int]]:
        t = await connect(lab.nats_servers(gateway), "drain-test", **lab.nats_connect_args(gateway))
        try:
            found = {}
            for stream in (OUT_STREAM, IN_STREAM):
                state = (await t.js.stream_info(stream)).state
                consumers = await t.js.consumers_info(stream)
                waiting = sum(c.num_pending + c.num_ack_pending for c in consumers)
                found[stream] = (state.messages, state.bytes, state.last_seq, waiting)
            return found
        finally:
            await t.close()

    return asyncio.run(go())


def test_out_and_in_streams_are_empty_once_everything_is_read(lab: Lab) -> None:
    clients = {office: Client.from_lab(lab.root, office) for office in (RU, TJ, MIG)}
    try:
        to_tj = [
            clients[RU].send_case_message([TJ], case_id="CASE-DRAIN", text="x" * 4000).message_id
            for _ in range(PER_SENDER)
        ]
        to_ru = [
            clients[MIG].send_case_message([RU, TJ], case_id="CASE-DRAIN", text="y" * 4000).message_id
            for _ in range(PER_SENDER)
        ]
        receive(clients[TJ], set(to_tj) | set(to_ru), wait_s=60.0)
        receive(clients[RU], set(to_ru), wait_s=60.0)
        wait_for(
            lambda: all(
                r.state is ReceiptState.READ
                for sender, ids in ((RU, to_tj), (MIG, to_ru))
                for m in ids
                for r in clients[sender].status(m).recipients
            ),
            timeout=60.0,
            what="READ from every recipient",
        )
    finally:
        for c in clients.values():
            c.close()
    # Each message is at least one out frame, one routed in frame per recipient and the
    # DELIVERED and READ receipts (out, then in to the sender) of each recipient.
    frames = 2 * PER_SENDER + 2 * 3 * PER_SENDER
    wait_for(lambda: all(s[0] == 0 and s[3] == 0 for s in _streams(lab).values()), what="empty streams")
    found = _streams(lab)
    print(f"\n[drain] (messages, bytes, last_seq, pending) {found}")
    for stream, (messages, size, _, waiting) in found.items():
        assert (messages, size, waiting) == (0, 0, 0), stream
    assert found[OUT_STREAM][2] + found[IN_STREAM][2] >= frames, "the traffic went through both streams"
