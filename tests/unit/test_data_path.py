"""The message data path: the body is encoded once at the sender and decoded once at the
recipient, and the office node's gRPC reads do not block its event loop."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path
from typing import Any

import pytest

from exchange.core import errors, seal
from exchange.core.codec import body as body_codec
from exchange.core.directory import DirectoryState, TrustAnchor
from exchange.core.identity import generate
from exchange.core.model import Authority, CaseMessage, Directory, Suite
from exchange.office.metrics import OfficeMetrics
from exchange.office.node import OfficeNode
from exchange.office.store import OfficeStore
from tests.unit.conftest import OfficeKeys

NOW = 1_760_000_000_000
SENDER = "ru-mvd-dushanbe"
RECIPIENT = "tj-mvd-moscow"
BODY = CaseMessage(case_id="case-7", text="Once, and only once.")


def test_body_is_encoded_once_and_decoded_once(
    offices: dict[str, OfficeKeys], directory: Directory, monkeypatch: pytest.MonkeyPatch
) -> None:
    encoded = seal.EncodedBody.of(BODY)
    calls: list[str] = []

    def no_encode(_: Any) -> bytes:
        calls.append("encode")
        raise AssertionError("seal() encoded a body it was given encoded")

    real_decode = body_codec.decode_body

    def counting_decode(data: bytes, limit: int = body_codec.MAX_BODY_BYTES) -> Any:
        calls.append("decode")
        return real_decode(data, limit)

    monkeypatch.setattr(seal, "encode_body", no_encode)
    monkeypatch.setattr(seal, "decode_body", counting_decode)
    envelope = seal.seal(
        encoded,
        sender=SENDER,
        sender_keys=offices[SENDER].signing,
        recipients=(RECIPIENT,),
        directory=directory,
        suite=Suite.CLASSIC,
        now_ms=NOW,
        ttl_s=3600,
    )
    assert calls == []  # sealed the caller's bytes as they are
    opened = seal.open_envelope(
        envelope, me=RECIPIENT, my_keys=offices[RECIPIENT].encryption, directory=directory, now_ms=NOW
    )
    assert calls == ["decode"]
    assert opened.body == BODY
    assert opened.body_bytes == encoded.data  # what the recipient stores: the sender's bytes


@pytest.mark.parametrize(
    ("recipients", "body", "error"),
    [
        pytest.param(("nobody",), BODY, errors.UnknownRecipientError, id="unknown-recipient"),
        pytest.param(
            (RECIPIENT,), CaseMessage(case_id="c", text="x" * 70_000), errors.OversizeError, id="body-too-big"
        ),
    ],
)
def test_seal_holds_the_senders_checks(
    offices: dict[str, OfficeKeys],
    kit: Any,
    recipients: tuple[str, ...],
    body: CaseMessage,
    error: type[errors.LiaisonError],
) -> None:
    small = kit.make_directory(list(offices.values()))
    small = dataclasses.replace(small, limits=dataclasses.replace(small.limits, max_body_bytes=65_536))
    with pytest.raises(error):
        seal.seal(
            seal.EncodedBody.of(body),
            sender=SENDER,
            sender_keys=offices[SENDER].signing,
            recipients=recipients,
            directory=small,
            suite=Suite.CLASSIC,
            now_ms=NOW,
            ttl_s=3600,
        )


@pytest.mark.parametrize("call", ["status", "case"])
async def test_a_slow_store_read_does_not_block_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, call: str
) -> None:
    store = OfficeStore(tmp_path / "office.db")
    try:
        anchor = TrustAnchor("loop-test", (Authority(id="ru-embassy", keys=()),), 1)
        node = OfficeNode(
            office=SENDER,
            identity=generate(SENDER, NOW),
            directory=DirectoryState(anchor),
            store=store,
            metrics=OfficeMetrics(SENDER),
        )

        def slow_read(*_: Any) -> Any:
            time.sleep(0.5)  # a read stuck behind the disk
            return None if call == "status" else ([], [])

        monkeypatch.setattr(store, "sent" if call == "status" else "case", slow_read)
        monkeypatch.setattr(store, "statements", lambda _: [])
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(ticker())
        try:
            read = node.status("01a22465-187a-7f35-b4cc-50ea0e0b5e98") if call == "status" else node.case("c")
            with pytest.raises(errors.NotFoundError):
                await read
        finally:
            task.cancel()
        # The loop ran on while the read slept (a blocking read would leave ticks at ~0).
        assert ticks >= 10, ticks
    finally:
        store.close()
