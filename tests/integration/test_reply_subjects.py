"""Reply subjects and acks: an office cannot make JetStream write for it, nor settle others' deliveries.

NATS permissions check the subject a client publishes to, not the reply
subject it names, and JetStream answers every API request (and a publish's
PubAck) by publishing to that reply subject. Here one office, holding only its
own NATS certificate as the lab issues it, makes each request it is allowed
to make with the reply subject set to each subject a stream captures —
another office's out and in subjects, the directory subject, an attachment
subject of another office and its own in subject — and the test checks, with
the gateway's own identity, that no stream's last sequence moved and that the
gateway's audit log did not grow.

The streams live in the ``LIAISON`` account that no office user is in; each
office is its own account whose service imports rewrite every reply subject
to ``_R_…`` (ADR 0009), so the answer reaches only the requester.

Failed before the fix (nats-server 2.15.1, one account, subject permissions
only): every request case wrote into the target streams — e.g. the pull
request's "404 No Messages" status, the directory message and the PubAck
landed on ``liaison.v1.out.tj-mvd-moscow`` and the gateway recorded new
REJECTED records in the other office's name; the consumer-create case could
also aim a push consumer's deliveries at another office's out subject.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator

import nats
import pytest

from exchange.client.sdk import Client
from exchange.core.wire import (
    ATTACH_STREAM,
    DIRECTORY_STREAM,
    DIRECTORY_SUBJECT,
    IN_STREAM,
    JS_API,
    OUT_STREAM,
    attach_subject,
    in_subject,
    inbox_prefix,
    office_durable,
    out_subject,
)
from gateway.client import AuditClient
from liaison.lab.cluster import RenderedNatsServer
from liaison.lab.lab import TOPOLOGIES, Lab
from liaison.natsserver import free_port
from tests.integration.labutil import INVENTORY, wait_for

RU, TJ = "ru-mvd-dushanbe", "tj-mvd-moscow"
STREAMS = (OUT_STREAM, IN_STREAM, DIRECTORY_STREAM, ATTACH_STREAM)
SETTLE_S = 2.5  # the gateway fetches with a 2 s long poll; a captured frame is audited well within this
OWN_CHUNK = attach_subject(RU, os.urandom(16).hex(), 0)
# Every subject a stream captures that RU must not be able to write on.
TARGETS = (
    out_subject(TJ),
    in_subject(TJ),
    in_subject(RU),
    DIRECTORY_SUBJECT,
    attach_subject(TJ, os.urandom(16).hex(), 0),
)
# Every JetStream request an office node makes: (id, subject, payload).
REQUESTS = {
    "direct-get-own-chunk": (f"{JS_API}.DIRECT.GET.{ATTACH_STREAM}.{OWN_CHUNK}", b""),
    "stream-msg-get-directory": (
        f"{JS_API}.STREAM.MSG.GET.{DIRECTORY_STREAM}",
        json.dumps({"last_by_subj": DIRECTORY_SUBJECT}).encode(),
    ),
    "pull-next-own-inbox": (
        f"{JS_API}.CONSUMER.MSG.NEXT.{IN_STREAM}.{office_durable(RU)}",
        json.dumps({"batch": 1, "no_wait": True}).encode(),
    ),
    "consumer-info-own": (f"{JS_API}.CONSUMER.INFO.{IN_STREAM}.{office_durable(RU)}", b""),
    "consumer-create-own": (
        f"{JS_API}.CONSUMER.CREATE.{IN_STREAM}.{office_durable(RU)}.{in_subject(RU)}",
        json.dumps(
            {
                "stream_name": IN_STREAM,
                "config": {
                    "durable_name": office_durable(RU),
                    "name": office_durable(RU),
                    "filter_subject": in_subject(RU),
                    "ack_policy": "explicit",
                    "deliver_policy": "all",
                },
            }
        ).encode(),
    ),
    "publish-own-out": (out_subject(RU), b"not a frame"),
    "publish-own-chunk": (attach_subject(RU, os.urandom(16).hex(), 0), b"chunk bytes"),
}
# What a request legitimately writes itself (one message per send): only these deltas are allowed.
OWN_WRITES = {"publish-own-out": OUT_STREAM, "publish-own-chunk": ATTACH_STREAM}


@pytest.fixture(scope="module", params=TOPOLOGIES)
def lab(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    root = tmp_path_factory.mktemp(f"reply-lab-{request.param}")
    with Lab(root, inventory=INVENTORY, topology=request.param) as lab:
        asyncio.run(_upload_own_chunk(lab))
        yield lab


async def _connect(lab: Lab, owner: str, errors: list[str] | None = None) -> nats.NATS:
    async def on_error(e: Exception) -> None:
        if errors is not None:
            errors.append(str(e))

    args = lab.nats_connect_args(owner)
    return await nats.connect(
        lab.nats_servers(owner), tls=args["tls"], inbox_prefix=args["inbox_prefix"] or "_INBOX",
        error_cb=on_error, allow_reconnect=False, connect_timeout=5,
    )  # fmt: skip


def _js(lab: Lab, owner: str, nc: nats.NATS) -> nats.js.JetStreamContext:
    return nc.jetstream(domain=lab.nats_connect_args(owner).get("domain"), timeout=5)


async def _upload_own_chunk(lab: Lab) -> None:
    """RU's legitimate upload of one chunk, so its direct get has something to answer."""
    nc = await _connect(lab, RU)
    try:
        await _js(lab, RU, nc).publish(OWN_CHUNK, b"sealed chunk")
    finally:
        await nc.close()


def _api(lab: Lab, owner: str, subject: str) -> str:
    """``subject`` addressed to the JetStream domain ``owner`` uses (cluster topology: the hub's)."""
    domain = lab.nats_connect_args(owner).get("domain")
    if domain and subject.startswith(f"{JS_API}."):
        return f"$JS.{domain}.API." + subject[len(JS_API) + 1 :]
    return subject


async def _last_seqs(lab: Lab) -> dict[str, int]:
    assert lab.deployment is not None
    gateway = lab.deployment.inventory.gateway.id
    nc = await _connect(lab, gateway)
    try:
        js = _js(lab, gateway, nc)
        return {s: (await js.stream_info(s)).state.last_seq for s in STREAMS}
    finally:
        await nc.close()


async def _aim(lab: Lab, subject: str, payload: bytes) -> list[str]:
    """As RU: send ``subject`` once with each target as its reply subject; the server's errors."""
    errors: list[str] = []
    nc = await _connect(lab, RU, errors)
    try:
        for target in TARGETS:
            await nc.publish(_api(lab, RU, subject), payload, reply=target)
        await nc.flush(timeout=5)
        await asyncio.sleep(0.5)
    finally:
        await nc.close()
    return errors


@pytest.mark.parametrize("request_id", list(REQUESTS))
def test_a_reply_subject_cannot_aim_jetstream_at_a_stream(lab: Lab, request_id: str) -> None:
    subject, payload = REQUESTS[request_id]
    own = OWN_WRITES.get(request_id)
    with AuditClient.from_lab(lab.root) as audit:
        size = audit.size()
        before = asyncio.run(_last_seqs(lab))
        asyncio.run(_aim(lab, subject, payload))
        time.sleep(SETTLE_S)
        after = asyncio.run(_last_seqs(lab))
        expected = {s: len(TARGETS) if s == own else 0 for s in STREAMS}
        moved = {s: after[s] - before[s] for s in STREAMS}
        assert moved == expected, f"{request_id}: JetStream wrote (stream: new messages) {moved}"
        # RU's own (malformed) frames on its own out subject are audited in RU's name; nothing else is.
        new = [audit.record(i).record for i in range(size, audit.size())]
        assert {r.sender for r in new} <= {RU}, f"{request_id}: audited in others' names: {new}"
        assert len(new) == (len(TARGETS) if own == OUT_STREAM else 0), new


def test_the_requests_themselves_are_still_answered(lab: Lab) -> None:
    """The same requests with the office's own inbox as reply subject work: the fix is not 'deny all'."""

    async def go() -> tuple[bytes, int]:
        nc = await _connect(lab, RU)
        try:
            chunk = await nc.request(_api(lab, RU, REQUESTS["direct-get-own-chunk"][0]), b"", timeout=5)
            info = await _js(lab, RU, nc).consumer_info(IN_STREAM, office_durable(RU))
            return chunk.data, info.num_pending
        finally:
            await nc.close()

    data, pending = asyncio.run(go())
    assert data == b"sealed chunk"
    assert pending >= 0


# --- acks -------------------------------------------------------------------------------


def _hostile_leaf(lab: Lab) -> RenderedNatsServer:
    """A leaf server RU's operators configured themselves: RU's leaf certificate, no local limits."""
    assert lab.cluster is not None
    site = lab.cluster.site
    (office,) = [o for o in site.offices if o.id == RU]
    files = lab.pki.files(office.nats_name)
    urls = [f"nats-leaf://{s.host}:{s.leaf_port}" for s in site.hub.servers]
    port = free_port()
    text = (
        f'server_name: "hostile-{RU}"\nlisten: "127.0.0.1:{port}"\n'
        "leafnodes {\n  remotes: [\n    {\n"
        f"      urls: {json.dumps(urls)}\n"
        f"      tls {{\n        cert_file: {json.dumps(str(files.cert))}\n"
        f"        key_file: {json.dumps(str(files.key))}\n        ca_file: {json.dumps(str(files.ca))}\n"
        "      }\n    }\n  ]\n}\n"
    )
    root = lab.root / "hostile-leaf"
    root.mkdir(exist_ok=True)
    return RenderedNatsServer(root, text, name=f"hostile-{RU}", port=port, http_port=0, monitor_any=True)


async def _hold_one_delivery(lab: Lab) -> tuple[str, int]:
    """Stand in for TJ's (stopped) node: fetch one of its deliveries, unacked; its ack subject."""
    assert lab.deployment is not None
    gateway = lab.deployment.inventory.gateway.id
    nc = await _connect(lab, gateway)
    try:
        js = _js(lab, gateway, nc)
        sub = await js.pull_subscribe_bind(durable=office_durable(TJ), stream=IN_STREAM)
        (msg,) = await sub.fetch(1, timeout=10)
        info = await js.consumer_info(IN_STREAM, office_durable(TJ))
        return msg.reply, info.num_ack_pending
    finally:
        await nc.close()


async def _settle_as_ru(lab: Lab, ack_subject: str, hostile: RenderedNatsServer | None) -> int:
    """Send +TERM, +NAK and +ACK to TJ's ack subject as RU; return TJ's ack-pending count after."""
    errors: list[str] = []
    if hostile is None:
        nc = await _connect(lab, RU, errors)
    else:
        nc = await nats.connect(
            f"nats://127.0.0.1:{hostile.port}",
            inbox_prefix=inbox_prefix(RU),  # the hub sends RU's link nothing else
            allow_reconnect=False,
            connect_timeout=5,
        )
    try:
        # The link works and is RU's: RU's own consumer answers through it.
        own = await nc.request(_api(lab, RU, REQUESTS["consumer-info-own"][0]), b"", timeout=5)
        assert office_durable(RU).encode() in own.data, own.data
        for verb in (b"+TERM", b"-NAK", b"+ACK"):
            await nc.publish(ack_subject, verb)
        await nc.flush(timeout=5)
        await asyncio.sleep(1.0)
    finally:
        await nc.close()
    assert lab.deployment is not None
    gateway = lab.deployment.inventory.gateway.id
    gc = await _connect(lab, gateway)
    try:
        return (await _js(lab, gateway, gc).consumer_info(IN_STREAM, office_durable(TJ))).num_ack_pending
    finally:
        await gc.close()


def test_an_office_cannot_ack_or_terminate_another_offices_deliveries(lab: Lab) -> None:
    """RU (its own client on one server; on a hub, a leaf server it configured itself) settles TJ's delivery.

    A real nats-server as RU's leaf forwards only what the hub showed interest in, so this
    passed before the fix too; the leaf protocol spoken directly is the next test.
    """
    lab.nodes[TJ].stop()
    hostile = _hostile_leaf(lab) if lab.cluster is not None else None
    try:
        with Client.from_lab(lab.root, RU) as ru:
            sent = ru.send_case_message([TJ], case_id="ACK-ATTACK", text="for TJ only").message_id
        ack_subject, pending = asyncio.run(_hold_one_delivery(lab))
        assert pending == 1
        if hostile is not None:
            hostile.start()
            wait_for(lambda: hostile.monitor("leafz").get("leafnodes", 0) >= 1, what="the hostile leaf link")
        assert asyncio.run(_settle_as_ru(lab, ack_subject, hostile)) == 1, "RU settled TJ's delivery"
    finally:
        if hostile is not None:
            hostile.stop()
        lab.start_node(TJ)
    with Client.from_lab(lab.root, TJ) as tj:  # redelivered after its ack wait: TJ gets it
        got = [d.message_id for d in tj.subscribe(wait_s=30) if d.message_id == sent]
    assert got == [sent]
