"""Poison input through the real servers: bounded header fields, no stuck frame, readable records.

Issue 11, section 3. One lab per module (real nats-server, gateway and office
node processes, real gRPC with mutual TLS). An office holding its own valid
credentials tries what its agency API and its NATS out subject let it send:

- a case id of 5000 characters through the agency API (the office must
  refuse it with INVALID_ARGUMENT naming the field and the limit);
- 30 envelopes with such a case id, sealed with the office's own keys and put
  on its out subject (the gateway must refuse each one with an audit record
  and a signed rejection, not retry them for ever, and an honest office's
  traffic must flow meanwhile);
- an envelope naming 1000 recipients (its audit record must stay readable by
  every reader: Query, Tail, ``audit verify``, ``audit export`` and the witness).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from exchange._pb.liaison.v1 import body_pb2, exchange_pb2
from exchange.client.sdk import AsyncClient, Client
from exchange.core import seal as seal_module
from exchange.core.codec.envelope import MAX_CONTEXT_BYTES, encode_header, encode_header_context
from exchange.core.envelope import ENVELOPE_VERSION, Envelope, Header, HeaderContext, Signature
from exchange.core.ids import new_message_id
from exchange.core.model import Algorithm, CaseMessage, Handling, Kind, Priority, Reason, ReceiptState, Suite
from exchange.core.seal import seal
from exchange.runtime.lifecycle import load_directory
from gateway.audit.record import Verdict
from gateway.client import AuditClient, AuditFilter
from gateway.witness.runner import Witness, load_state, load_witness_config
from liaison.cli import main
from liaison.lab.lab import Lab
from liaison.serve.witness import open_witness_key, save_state
from tests.integration.labutil import INVENTORY, directory, identity, inject, wait_for

RU, TJ, MIG = "ru-mvd-dushanbe", "tj-mvd-moscow", "tj-migration-moscow"
WITNESS = "tj-embassy-moscow"
LONG_CASE_ID = "C" * 5000
POISON_FRAMES = 30
SETTLE_S = 30.0


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with Lab(tmp_path_factory.mktemp("poison-lab"), inventory=INVENTORY) as lab:
        yield lab


@pytest.fixture(scope="module")
def audit(lab: Lab) -> Iterator[AuditClient]:
    with AuditClient.from_lab(lab.root) as client:
        yield client


def cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(list(argv))
    return code, out.getvalue()


def records_of(audit: AuditClient, message_id: str) -> list[Verdict]:
    found, _ = audit.query(AuditFilter(message_id=message_id), oldest_first=True)
    return [r.record.verdict for r in found]


def test_office_api_refuses_a_case_id_over_its_bound(lab: Lab) -> None:
    """An agency's 5000-character case id: INVALID_ARGUMENT naming the field and its limit.

    Failed before the fix: the office answered ACCEPTED (and the message then
    stayed ACCEPTED for ever: the gateway's audit store refused its record).
    The request is built by hand, as an agency system not using the SDK would.
    """

    async def go() -> grpc.aio.AioRpcError:
        async with AsyncClient.from_lab(lab.root, RU) as client:
            request = exchange_pb2.SendCaseMessageRequest(
                options=exchange_pb2.SendOptions(recipients=[TJ], case_id=LONG_CASE_ID),
                case_message=body_pb2.CaseMessage(case_id=LONG_CASE_ID, text="poison"),
            )
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await client._stub.SendCaseMessage(request, timeout=10)
            return raised.value

    error = asyncio.run(go())
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    details = error.details() or ""
    assert "case_id" in details, details
    assert "128" in details, details
    assert LONG_CASE_ID not in details  # the value itself is not echoed back


def test_sdk_refuses_a_case_id_over_its_bound_before_sending(lab: Lab) -> None:
    """The public SDK says the same before anything leaves the agency system.

    Failed before the fix: ``send_case_message`` returned a message id, ACCEPTED.
    """
    with Client.from_lab(lab.root, RU) as client, pytest.raises(ValueError, match=r"case_id .*128"):
        client.send_case_message([TJ], case_id=LONG_CASE_ID, text="poison")


def test_poison_headers_end_as_audited_rejections_and_others_flow(lab: Lab, audit: AuditClient) -> None:
    """30 signed envelopes with a 5000-character case id on the office's own out subject.

    Each must end as one audited rejection (reason malformed, the detail names
    the field) within a bounded time, while another office's messages are
    delivered meanwhile. Failed before the fix: no record ever appeared for
    any of the 30 (the store refused a case id over 4096 characters, each
    group commit they landed in failed, and the gateway retried them for ever).
    """
    poison_ids: list[str] = []
    with pytest.MonkeyPatch.context() as mp:
        # A hostile office runs its own code: its seal() has no bound on the case id.
        mp.setattr(seal_module, "check_header_bounds", lambda ctx: None, raising=False)
        for i in range(POISON_FRAMES):
            envelope = _with_case_id(lab, RU, [TJ], LONG_CASE_ID, text=f"poison {i}")
            poison_ids.append(envelope.header.context.message_id)
            inject(lab, RU, envelope, envelope.header.context.message_id)
    with Client.from_lab(lab.root, MIG) as honest:
        sent = [
            honest.send_case_message([TJ], case_id="CASE-HONEST", text=f"n {i}").message_id for i in range(5)
        ]
        for message_id in sent:
            wait_for(
                lambda m=message_id: (
                    honest.status(m).recipients[0].state in (ReceiptState.DELIVERED, ReceiptState.READ)
                ),
                timeout=SETTLE_S,
                what=f"honest {message_id} delivered during the flood",
            )
    for message_id in poison_ids:
        wait_for(
            lambda m=message_id: bool(records_of(audit, m)), timeout=SETTLE_S, what=f"record of {message_id}"
        )
        found, _ = audit.query(AuditFilter(message_id=message_id))
        assert [r.record.verdict for r in found] == [Verdict.REJECTED]
        record = found[0].record
        assert record.reason is Reason.MALFORMED
        assert "case_id" in record.detail
        assert "128" in record.detail
        assert record.case_id == ""  # the oversize value is not copied into the log
    # The sender office got each signed rejection (it sent none of them itself, so its node
    # logs a rejection for a message it does not know, by id).
    office_log = lab.nodes[RU].log
    wait_for(
        lambda: all(m in office_log.read_text(errors="replace") for m in poison_ids),
        timeout=SETTLE_S,
        what="the signed rejections at the sender office",
    )
    rejections = [
        line
        for line in office_log.read_text(errors="replace").splitlines()
        if "rejection_for_unknown" in line
    ]
    assert all(any(m in line for line in rejections) for m in poison_ids)


def _with_case_id(lab: Lab, sender: str, recipients: list[str], case_id: str, *, text: str) -> Envelope:
    """An envelope sealed with ``sender``'s real keys, carrying ``case_id`` in body and header."""
    body = object.__new__(CaseMessage)  # a hostile office builds its body without the checks
    for name, value in (("case_id", case_id), ("text", text), ("thread", ""), ("subject", "")):
        object.__setattr__(body, name, value)
    object.__setattr__(body, "attachments", ())
    return seal(
        body,
        sender=sender,
        sender_keys=identity(lab, sender).signing_keys(Suite.CLASSIC),
        recipients=recipients,
        directory=directory(lab),
        suite=Suite.CLASSIC,
        now_ms=int(time.time() * 1000),
        ttl_s=3600,
        case_id=case_id,
    )


def _wide_envelope(sender: str, recipients: int) -> Envelope:
    """An unsigned envelope naming ``recipients`` long office ids (refused, but audited)."""
    now = int(time.time() * 1000)
    ctx = HeaderContext(
        version=ENVELOPE_VERSION,
        message_id=new_message_id(now),
        sender=sender,
        recipients=tuple(f"{i:04d}-" + "r" * 58 for i in range(recipients)),
        kind=Kind.CASE_MESSAGE,
        priority=Priority.ROUTINE,
        case_id="",
        in_reply_to="",
        created_ms=now,
        expires_ms=now + 3_600_000,
        handling=Handling.OFFICIAL,
        suite=Suite.CLASSIC,
        signing_key_ids=("k",),
        body_size=1,
    )
    # The case id fills the context up to what the codec accepts: the record holds all of it.
    room = MAX_CONTEXT_BYTES - len(encode_header_context(ctx)) - 8
    ctx = dataclasses.replace(ctx, case_id="W" * room)
    header = Header(ctx, encode_header_context(ctx), b"\0" * 32, ())
    return Envelope(header, encode_header(header), (Signature("k", Algorithm.ED25519, b"\0" * 64),), b"x")


def test_every_reader_reads_a_rejected_envelope_with_1000_recipients(
    lab: Lab, audit: AuditClient, tmp_path: Path
) -> None:
    """A rejected envelope naming 1000 recipients: Query, Tail, verify, export, witness all read it.

    Failed before the fix: its audit record was over the 64 KiB ``decode_record``
    accepts (the store took up to 1 MiB), so Query, Tail, ``audit verify``,
    ``audit export`` and the witness failed at that index for good.
    """
    envelope = _wide_envelope(RU, 1000)
    message_id = envelope.header.context.message_id
    inject(lab, RU, envelope, message_id)
    wait_for(
        lambda: bool(records_of(audit, message_id)), timeout=SETTLE_S, what="record of the wide envelope"
    )
    found, _ = audit.query(AuditFilter(message_id=message_id))
    assert [r.record.verdict for r in found] == [Verdict.REJECTED]
    index = found[0].index
    tailed = next(iter(audit.tail(index, idle_s=5.0)))
    assert tailed.index == index
    assert tailed.record.message_id == message_id
    code, out = cli("audit", "verify", "--lab", str(lab.root))
    assert code == 0, out
    code, out = cli("audit", "export", "--lab", str(lab.root), "--out", str(tmp_path / "bundle.json"))
    assert code == 0, out
    code, out = cli("audit", "verify-bundle", str(tmp_path / "bundle.json"))
    assert code == 0, out
    code, out = cli("audit", "head", "--lab", str(lab.root), "--json")
    assert code == 0, out
    (tmp_path / "head.json").write_text(out)  # the head the operator confirms (the witness pins it)
    code, out = cli(
        "witness", "init", "--lab", str(lab.root), "--authority", WITNESS, "--dir", str(tmp_path / "w"),
        "--head", str(tmp_path / "head.json"),
    )  # fmt: skip
    assert code == 0, out
    config = Path(out.strip())
    cfg = load_witness_config(config)
    key = open_witness_key(cfg, load_directory(cfg.directory))
    with AuditClient(cfg.endpoint, tls=cfg.tls, timeout=cfg.timeout_s) as client:
        Witness(cfg, client, load_directory(cfg.directory), key, save_state=save_state).round()
    state = load_state(cfg.state, cfg.witness)
    assert state.alarm is None, state.alarm
    assert state.last is not None
    assert state.last.size > index
    code, out = cli("witness", "status", "--config", str(config), "--json")
    assert code == 0, out
    assert json.loads(out)["alarm"] is None
