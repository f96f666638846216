"""Transport security, attacked through the real interfaces.

One lab (real nats-server with TLS and per-office users, real gRPC servers
with mutual TLS). Each attempt below must be refused by the server itself:
NATS permission violations arrive through the client's error callback; gRPC
refusals are a status code.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Iterator
from pathlib import Path

import grpc
import nats
import pytest

from exchange._pb.liaison.v1 import exchange_pb2
from exchange.client.sdk import AsyncClient, Client, ClientTls
from exchange.core.errors import RemoteError
from exchange.core.wire import ATTACH_STREAM, DIRECTORY_SUBJECT, attach_subject, in_subject, out_subject
from exchange.runtime.grpcutil import MAX_CALLS_PER_CLIENT
from gateway.client import AuditClient
from keys import pki
from liaison.lab.lab import Lab
from tests.integration.labutil import INVENTORY

CA_PW = b"test-ca-passphrase"  # the deployment CA key is always encrypted

RU, TJ, MIG = "ru-mvd-dushanbe", "tj-mvd-moscow", "tj-migration-moscow"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with Lab(tmp_path_factory.mktemp("lab"), inventory=INVENTORY) as lab:
        yield lab


@pytest.fixture(scope="module")
def foreign_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another deployment's CA with a client certificate of the right shape."""
    root = tmp_path_factory.mktemp("foreign-pki")
    pki.create_ca(root, "other-deployment", passphrase=CA_PW)
    pki.issue(root, "client", f"{RU}-agency", ca_passphrase=CA_PW)
    pki.issue(root, "node", RU, ca_passphrase=CA_PW)
    return root


# --- NATS ------------------------------------------------------------------------------


async def _attempt(lab: Lab, owner: str, action: str) -> list[str]:
    """Do ``action`` as ``owner``'s node on NATS; return the server's permission errors."""
    errors: list[str] = []

    async def on_error(e: Exception) -> None:
        errors.append(str(e))

    context = lab.nats_connect_args(owner)
    nc = await nats.connect(
        lab.nats_url, tls=context["tls"], inbox_prefix=context["inbox_prefix"], error_cb=on_error,
        allow_reconnect=False,
    )  # fmt: skip
    try:
        js = nc.jetstream(timeout=2)
        if action == "publish-as-other":
            await nc.publish(out_subject(TJ), b"forged")
        elif action == "publish-to-inbox":
            await nc.publish(in_subject(TJ), b"forged")
        elif action == "subscribe-other-inbox":
            await nc.subscribe(in_subject(TJ))
        elif action == "subscribe-out-stream":
            await nc.subscribe("liaison.v1.out.>")
        elif action == "publish-directory":
            await nc.publish(DIRECTORY_SUBJECT, b"forged directory")
        elif action == "read-other-consumer":
            # The request is dropped by the server: the client sees a timeout, error_cb the violation.
            with contextlib.suppress(nats.errors.Error, TimeoutError):
                await js.consumer_info("LIAISON_IN", f"office-{TJ}")
        elif action == "read-out-stream":
            with contextlib.suppress(nats.errors.Error, TimeoutError):
                await js.get_msg("LIAISON_OUT", seq=1)
        elif action == "other-inbox-prefix":
            await nc.subscribe(f"_INBOX_{TJ}.>")
        elif action == "publish-attachment-as-other":
            await nc.publish(attach_subject(TJ, "0" * 32, 0), b"forged chunk")
        elif action == "list-attachment-stream":
            with contextlib.suppress(nats.errors.Error, TimeoutError):
                await js.stream_info(ATTACH_STREAM, subjects_filter=">")
        elif action == "read-attachment-by-sequence":
            with contextlib.suppress(nats.errors.Error, TimeoutError):
                await js.get_msg(ATTACH_STREAM, seq=1, direct=True)
        await nc.flush(timeout=2)
        await asyncio.sleep(0.3)
    finally:
        await nc.close()
    return errors


@pytest.mark.parametrize(
    "action",
    [
        "publish-as-other",
        "publish-to-inbox",
        "subscribe-other-inbox",
        "subscribe-out-stream",
        "publish-directory",
        "read-other-consumer",
        "read-out-stream",
        "other-inbox-prefix",
        "publish-attachment-as-other",
        "list-attachment-stream",
        "read-attachment-by-sequence",
    ],
)
def test_an_office_cannot_reach_beyond_its_own_subjects(lab: Lab, action: str) -> None:
    errors = asyncio.run(_attempt(lab, RU, action))
    assert any("permissions violation" in e.lower() for e in errors), errors


def test_an_office_can_do_its_own_work(lab: Lab) -> None:
    """The same identity's legitimate traffic flows (the permissions are not simply 'deny all')."""
    with Client.from_lab(lab.root, RU) as ru, Client.from_lab(lab.root, TJ) as tj:
        sent = ru.send_case_message([TJ], case_id="SEC", text="permitted")
        got = [d.message_id for d in tj.subscribe(wait_s=10) if d.message_id == sent.message_id]
    assert got == [sent.message_id]


def _tls_context(files: tuple[Path, Path, Path] | None, ca: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    if files is not None:
        context.load_cert_chain(str(files[1]), str(files[2]))
    return context


@pytest.mark.parametrize("who", ["no-certificate", "foreign-ca"])
def test_nats_refuses_clients_without_a_deployment_certificate(lab: Lab, foreign_ca: Path, who: str) -> None:
    ca = lab.pki.ca
    files = (
        None
        if who == "no-certificate"
        else (foreign_ca / "ca.crt", foreign_ca / f"{RU}.crt", foreign_ca / f"{RU}.key")
    )

    async def go() -> None:
        await nats.connect(
            lab.nats_url, tls=_tls_context(files, ca), allow_reconnect=False, max_reconnect_attempts=0,
            connect_timeout=3,
        )  # fmt: skip

    with pytest.raises((nats.errors.Error, OSError)):  # refused at the TLS handshake or by authorization
        asyncio.run(go())


# --- gRPC ------------------------------------------------------------------------------


def _office_client(lab: Lab, office: str, tls: ClientTls | None) -> Client:
    target = lab.nodes[office].grpc
    return Client(target, tls=tls, timeout=5)


def test_office_refuses_another_offices_agency(lab: Lab) -> None:
    with (
        _office_client(lab, TJ, lab.client_tls(f"{RU}-agency")) as client,
        pytest.raises(RemoteError) as info,
    ):
        client.offices()
    assert info.value.status == "PERMISSION_DENIED"


@pytest.mark.parametrize("name", ["operator", "ru-embassy-dushanbe"])
def test_office_refuses_non_agency_roles(lab: Lab, name: str) -> None:
    with _office_client(lab, RU, lab.client_tls(name)) as client, pytest.raises(RemoteError) as info:
        client.offices()
    assert info.value.status == "PERMISSION_DENIED"


def test_office_serves_its_own_agency(lab: Lab) -> None:
    with _office_client(lab, RU, lab.client_tls(f"{RU}-agency")) as client:
        assert client.offices().self_id == RU


def test_office_refuses_plaintext_and_foreign_certificates(lab: Lab, foreign_ca: Path) -> None:
    target = lab.nodes[RU].grpc
    with grpc.insecure_channel(target) as channel, pytest.raises(grpc.RpcError) as plain:
        channel.unary_unary("/liaison.v1.ExchangeService/ListOffices")(b"", timeout=5)
    assert plain.value.code() is grpc.StatusCode.UNAVAILABLE
    foreign = ClientTls(lab.pki.ca, foreign_ca / f"{RU}-agency.crt", foreign_ca / f"{RU}-agency.key")
    with _office_client(lab, RU, foreign) as client, pytest.raises(RemoteError) as info:
        client.offices()
    assert info.value.status == "UNAVAILABLE"


def test_gateway_audit_needs_an_operator_or_authority(lab: Lab) -> None:
    with AuditClient(lab.gateway.grpc, tls=lab.client_tls(f"{RU}-agency"), timeout=5) as audit:
        with pytest.raises(RemoteError) as info:
            audit.tree_head()
        assert info.value.status == "PERMISSION_DENIED"
    with AuditClient.from_lab(lab.root) as operator:
        assert operator.tree_head().tree_head.size >= 0
        with pytest.raises(RemoteError) as denied:
            operator.publish_directory(operator.directory())
        assert denied.value.status == "PERMISSION_DENIED"  # only authorities publish directories


# --- limits ----------------------------------------------------------------------------


def test_one_client_cannot_hold_more_than_its_share_of_calls(lab: Lab) -> None:
    async def go() -> tuple[str, str, bool]:
        greedy = AsyncClient(lab.nodes[RU].grpc, tls=lab.client_tls(f"{RU}-agency"), timeout=5)
        other = AsyncClient(lab.nodes[RU].grpc, tls=lab.client_tls("lab-agency"), timeout=5)
        streams = [greedy.subscribe(10**9) for _ in range(MAX_CALLS_PER_CLIENT)]
        tasks = [asyncio.create_task(anext(s)) for s in streams]  # type: ignore[arg-type]
        await asyncio.sleep(1.0)  # every stream is open and waiting on the server
        try:
            try:
                await greedy.offices()
                refused = ""
            except RemoteError as e:
                refused = e.status
            served_other = (await other.offices()).self_id
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for s in streams:
                await s.aclose()  # type: ignore[attr-defined]
        await asyncio.sleep(0.5)
        recovered = (await greedy.offices()).self_id == RU
        await greedy.close()
        await other.close()
        return refused, served_other, recovered

    refused, served_other, recovered = asyncio.run(go())
    assert refused == "RESOURCE_EXHAUSTED"
    assert served_other == RU, "another client is still served"
    assert recovered, "the client is served again once its calls end"


def test_oversized_grpc_message_is_refused_and_the_node_keeps_serving(lab: Lab) -> None:
    tls = lab.client_tls(f"{RU}-agency")
    creds = grpc.ssl_channel_credentials(tls.ca.read_bytes(), tls.key.read_bytes(), tls.cert.read_bytes())
    options = [("grpc.max_send_message_length", 64 * 1024 * 1024)]
    request = exchange_pb2.SendCaseMessageRequest(
        options=exchange_pb2.SendOptions(recipients=[TJ]),
        case_message={"case_id": "BIG", "text": "x" * (17 * 1024 * 1024)},
    )
    with grpc.secure_channel(lab.nodes[RU].grpc, creds, options=options) as channel:
        call = channel.unary_unary(
            "/liaison.v1.ExchangeService/SendCaseMessage",
            request_serializer=exchange_pb2.SendCaseMessageRequest.SerializeToString,
            response_deserializer=exchange_pb2.SendCaseMessageResponse.FromString,
        )
        with pytest.raises(grpc.RpcError) as info:
            call(request, timeout=30)
    assert info.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "larger than max" in (info.value.details() or "")
    with Client.from_lab(lab.root, RU) as client:
        assert client.offices().self_id == RU
