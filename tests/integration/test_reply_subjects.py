"""Reply subjects and acks: an office cannot make JetStream write for it, nor settle others' deliveries.

NATS permissions check the subject a client publishes to, not the reply
subject it names, and JetStream answers every API request (and a publish's
PubAck) by publishing to that reply subject. Here one office (RU), holding
only its own NATS certificate as the lab issues it, makes each request its
node makes — a direct get of its own chunk, a stream message get of the
directory, a pull request and a consumer info on its own inbox consumer, a
consumer create, a publish on its own out and attachment subjects — with the
reply subject set to each subject a stream captures: TJ's out and in subjects,
its own in subject, the directory subject, an attachment subject of TJ. The
test then checks, as the gateway, that no stream's last sequence moved beyond
the request's own legitimate write and that the audit log holds nothing new in
another office's name. Both lab topologies: one server, and the hub cluster
reached through each office's leaf server.

The fix (ADR 0011): the streams live in account ``LIAISON``, each office is an
account of its own whose service imports rewrite every reply subject to
``_R_…``, and offices may not create consumers.

Failed before the fix (nats-server 2.15.1, one account with subject
permissions, both topologies): every one of the 7 requests wrote into the
streams — 1 new message on LIAISON_OUT (TJ's out subject, which the gateway
consumes as TJ's), 2 on LIAISON_IN, 1 on LIAISON_DIRECTORY, 1 on
LIAISON_ATTACH, e.g. ``pull-next-own-inbox: JetStream wrote (stream: new
messages) {'LIAISON_OUT': 1, 'LIAISON_IN': 2, 'LIAISON_DIRECTORY': 1,
'LIAISON_ATTACH': 1}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import ssl
import time
from collections.abc import Iterator

import nats
import nats.errors
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
    office_durable,
    out_subject,
)
from gateway.client import AuditClient
from liaison.lab.lab import TOPOLOGIES, Lab
from tests.integration.labutil import INVENTORY

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


def _gateway(lab: Lab) -> str:
    assert lab.deployment is not None
    return lab.deployment.inventory.gateway.id


async def _last_seqs(lab: Lab) -> dict[str, int]:
    gateway = _gateway(lab)
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


def test_an_answer_aimed_at_its_own_out_subject_is_only_its_own_frame(lab: Lab) -> None:
    """What remains: an office can aim an answer at a subject of its own account, and its own
    out subject is one (an import). The frame is one RU could publish itself and is audited in
    RU's name only; no other stream moves. (Passes before the fix too: it is no attack.)"""

    async def aim() -> None:
        nc = await _connect(lab, RU)
        try:
            subject, payload = REQUESTS["stream-msg-get-directory"]
            await nc.publish(_api(lab, RU, subject), payload, reply=out_subject(RU))
            await nc.flush(timeout=5)
        finally:
            await nc.close()

    with AuditClient.from_lab(lab.root) as audit:
        size = audit.size()
        before = asyncio.run(_last_seqs(lab))
        asyncio.run(aim())
        time.sleep(SETTLE_S)
        after = asyncio.run(_last_seqs(lab))
        moved = {s: after[s] - before[s] for s in STREAMS}
        new = [audit.record(i).record for i in range(size, audit.size())]
    # One server: the answer lands on RU's out subject. Hub: it reaches RU's leaf, and no further.
    assert moved[OUT_STREAM] in (0, 1)
    assert moved == {s: moved[OUT_STREAM] if s == OUT_STREAM else 0 for s in STREAMS}
    assert [r.sender for r in new] == [RU] * moved[OUT_STREAM]


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


async def _until_pong(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        line = await asyncio.wait_for(reader.readline(), timeout=5)
        if not line or line.startswith(b"-ERR"):
            raise AssertionError(f"the hub closed the leaf link: {line!r}")
        if line.startswith(b"PING"):
            writer.write(b"PONG\r\n")
        elif line.startswith(b"PONG"):
            return


async def _as_raw_leaf(lab: Lab, messages: list[tuple[str, bytes]]) -> None:
    """Be RU's leaf server, speaking the leaf-node protocol itself with RU's leaf certificate.

    A real nats-server as leaf forwards a message only where the hub showed interest; a
    hostile site need not run one, so the hub must hold up against any ``LMSG`` sent.
    """
    assert lab.cluster is not None
    site = lab.cluster.site
    (office,) = [o for o in site.offices if o.id == RU]
    files = lab.pki.files(office.nats_name)
    context = ssl.create_default_context(cafile=str(files.ca))
    context.load_cert_chain(str(files.cert), str(files.key))
    hub = site.hub.servers[0]
    reader, writer = await asyncio.open_connection(hub.host, hub.leaf_port)
    try:
        assert (await asyncio.wait_for(reader.readline(), timeout=5)).startswith(b"INFO ")
        await writer.start_tls(context, server_hostname=hub.host)
        hello = {"name": f"hostile-{RU}", "hub": False, "headers": True, "compression": "off"}
        writer.write(b"CONNECT " + json.dumps(hello).encode() + b"\r\nPING\r\n")
        await _until_pong(reader, writer)
        for subject, payload in messages:
            writer.write(f"LMSG {subject} {len(payload)}\r\n".encode() + payload + b"\r\n")
        writer.write(b"PING\r\n")
        await _until_pong(reader, writer)
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()


async def _hold_one_delivery(lab: Lab) -> str:
    """Stand in for TJ's (stopped) node: fetch one of its deliveries, unacked; its ack subject."""
    nc = await _connect(lab, _gateway(lab))
    try:
        js = _js(lab, _gateway(lab), nc)
        sub = await js.pull_subscribe_bind(durable=office_durable(TJ), stream=IN_STREAM)
        deadline = time.monotonic() + 60  # the routed copy may take a while on a loaded cluster lab
        while True:
            try:
                (msg,) = await sub.fetch(1, timeout=5)
            except nats.errors.TimeoutError:
                if time.monotonic() > deadline:
                    raise
                continue
            return msg.reply
    finally:
        await nc.close()


async def _tj_inbox(lab: Lab) -> tuple[int, int]:
    """TJ's consumer as the gateway sees it: (ack pending, ack floor stream sequence)."""
    nc = await _connect(lab, _gateway(lab))
    try:
        info = await _js(lab, _gateway(lab), nc).consumer_info(IN_STREAM, office_durable(TJ))
        return info.num_ack_pending, info.ack_floor.stream_seq if info.ack_floor else 0
    finally:
        await nc.close()


async def _settle_as_ru(lab: Lab, ack_subject: str) -> None:
    """Send +TERM, -NAK and +ACK to TJ's ack subject as RU can: its client, or its leaf link on a hub.

    First something RU may do (upload a chunk), so a link that is refused outright cannot
    pass for a defence: the chunk must land.
    """
    verbs = [(ack_subject, verb) for verb in (b"+TERM", b"-NAK", b"+ACK")]
    proof = (attach_subject(RU, os.urandom(16).hex(), 0), b"link works")
    before = (await _last_seqs(lab))[ATTACH_STREAM]
    if lab.cluster is not None:
        await _as_raw_leaf(lab, [proof, *verbs])
    else:
        nc = await _connect(lab, RU)
        try:
            for subject, payload in [proof, *verbs]:
                await nc.publish(subject, payload)
            await nc.flush(timeout=5)
        finally:
            await nc.close()
    await asyncio.sleep(1.0)
    assert (await _last_seqs(lab))[ATTACH_STREAM] == before + 1, "RU's own write did not land"


def test_an_office_cannot_ack_or_terminate_another_offices_deliveries(lab: Lab) -> None:
    """RU settles TJ's delivery: on one server with its own client, on a hub as its own leaf link.

    Failed before the fix (cluster topology): the hub exempts ``$JS.ACK.…`` from leaf
    permissions and RU's link was in the streams' account, so RU's ``+TERM`` ended TJ's
    delivery (ack pending 1 -> 0, ack floor moved) and the message never reached TJ.
    """
    lab.nodes[TJ].stop()
    try:
        with Client.from_lab(lab.root, RU) as ru:
            sent = ru.send_case_message([TJ], case_id="ACK-ATTACK", text="for TJ only").message_id
        ack_subject = asyncio.run(_hold_one_delivery(lab))
        held = asyncio.run(_tj_inbox(lab))
        assert held[0] == 1
        asyncio.run(_settle_as_ru(lab, ack_subject))
        assert asyncio.run(_tj_inbox(lab)) == held, "RU settled TJ's delivery"
    finally:
        lab.start_node(TJ)
    with Client.from_lab(lab.root, TJ) as tj:  # redelivered after its ack wait: TJ gets it
        got = [d.message_id for d in tj.subscribe(wait_s=30) if d.message_id == sent]
    assert got == [sent]
