"""The NATS names: one home (``exchange.core.wire``), and the names that must agree do.

An office's NATS permissions and the durable consumer its node creates are two
views of one name; if they drifted apart the node could not read its inbox.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from exchange.core import wire
from exchange.core.directory import DirectoryState, TrustAnchor
from exchange.core.errors import CodecError, OversizeError
from exchange.core.identity import generate
from exchange.core.model import Authority
from exchange.nats.permissions import office_permissions
from exchange.office.metrics import OfficeMetrics
from exchange.office.node import OfficeNode
from exchange.office.store import OfficeStore

NOW = 1_760_000_000_000
OFFICE = "ru-mvd-dushanbe"


class _StopError(Exception):
    pass


class _RecordingTransport:
    """Just enough of ``Transport`` for ``OfficeNode.run``: records the consumer it asks for."""

    def __init__(self) -> None:
        self.consumers: list[tuple[str, str, str]] = []

    async def watch_directory(self, callback: Any) -> None:
        await asyncio.Event().wait()

    async def publish_many(self, items: Any) -> list[Any]:
        return []

    async def consume(self, stream: str, durable: str, filter_subject: str, handler: Any, **_: Any) -> None:
        self.consumers.append((stream, durable, filter_subject))
        raise _StopError


API = f"$JS.{wire.OFFICE_JS_DOMAIN}.API"


def _js_api_names(office: str) -> list[str]:
    return [
        s
        for s in office_permissions(office)["publish"]["allow"]
        if s.startswith((f"{API}.CONSUMER", "$JS.ACK"))
    ]


async def test_permissions_allow_exactly_the_durable_the_office_node_uses(tmp_path: Path) -> None:
    store = OfficeStore(tmp_path / "office.db")
    try:
        anchor = TrustAnchor("wire-test", (Authority(id="ru-embassy", keys=()),), 1)
        node = OfficeNode(
            office=OFFICE,
            identity=generate(OFFICE, NOW),
            directory=DirectoryState(anchor),
            store=store,
            metrics=OfficeMetrics(OFFICE),
        )
        transport = _RecordingTransport()
        with pytest.raises(ExceptionGroup) as raised:
            await asyncio.wait_for(node.run(transport), timeout=10)  # type: ignore[arg-type]
        assert raised.group_contains(_StopError)
    finally:
        store.close()
    ((stream, durable, filter_subject),) = transport.consumers
    assert (stream, filter_subject) == (wire.IN_STREAM, wire.in_subject(OFFICE))
    allowed = office_permissions(OFFICE)["publish"]["allow"]
    assert f"{API}.CONSUMER.INFO.{stream}.{durable}" in allowed
    assert f"{API}.CONSUMER.MSG.NEXT.{stream}.{durable}" in allowed
    assert f"$JS.ACK.{stream}.{durable}.>" in allowed
    # The office binds to the consumer the gateway created: a create request would name
    # its own deliver subject (ADR 0011).
    assert not any(".CONSUMER.CREATE." in s for s in allowed), allowed
    # ... and no other consumer: every consumer permission names this durable.
    names = _js_api_names(OFFICE)
    assert len(names) == 3
    assert all(f".{stream}.{durable}" in name for name in names), names


def test_another_office_cannot_use_this_durable() -> None:
    other = "tj-mvd-moscow"
    assert not any(wire.office_durable(OFFICE) in name for name in _js_api_names(other))


@pytest.mark.parametrize(
    ("office", "durable"),
    [
        pytest.param("ru-mvd-dushanbe", "gateway-ru-mvd-dushanbe", id="valid-office-id"),
        pytest.param("Not.An.Id", None, id="invalid-id-is-hashed"),
    ],
)
def test_gateway_durable(office: str, durable: str | None) -> None:
    name = wire.gateway_durable(office)
    assert name.startswith(wire.GATEWAY_DURABLE_PREFIX)
    if durable is None:
        assert name == wire.gateway_durable(office)  # stable
        assert len(name) == len(wire.GATEWAY_DURABLE_PREFIX) + 25
    else:
        assert name == durable


def test_subjects_round_trip() -> None:
    assert wire.office_of_out_subject(wire.out_subject(OFFICE)) == OFFICE
    assert wire.out_subject(OFFICE).startswith(wire.OUT_FILTER[:-1])
    assert wire.in_subject(OFFICE).startswith(wire.IN_FILTER[:-1])
    assert wire.attach_subject(OFFICE, "a" * 32, 3).startswith(wire.office_attach_filter(OFFICE)[:-1])


@pytest.mark.parametrize(
    ("subject", "size", "msg_id", "priority", "error"),
    [
        pytest.param("liaison.v1.out.a", wire.MAX_PAYLOAD_BYTES + 1, "big", 1, OversizeError, id="oversize"),
        pytest.param("liaison.v1.out.a", 1, "", 1, CodecError, id="empty-id"),
        pytest.param("liaison.v1.out.a", 1, "i" * (wire.MAX_MSG_ID_LEN + 1), 1, CodecError, id="long-id"),
        pytest.param("liaison.v1.out.a", 1, "p0", wire.PRIORITY_MIN - 1, CodecError, id="priority-low"),
        pytest.param("liaison.v1.out.a", 1, "p5", wire.PRIORITY_MAX + 1, CodecError, id="priority-high"),
        pytest.param("liaison.v1.out a", 1, "sp", 1, CodecError, id="space-in-subject"),
        pytest.param("", 1, "nosubject", 1, CodecError, id="empty-subject"),
    ],
)
def test_check_outbound_refuses(
    subject: str, size: int, msg_id: str, priority: int, error: type[Exception]
) -> None:
    with pytest.raises(error):
        wire.check_outbound(subject, b"x" * size, msg_id, priority)


@pytest.mark.parametrize(
    ("value", "priority"),
    [
        pytest.param(None, 1, id="missing"),
        pytest.param("", 1, id="empty"),
        pytest.param("x", 1, id="malformed"),
        pytest.param("0", 1, id="below-range"),
        pytest.param("5", 1, id="above-range"),
        pytest.param("3", 3, id="in-range"),
    ],
)
def test_parse_priority(value: str | None, priority: int) -> None:
    assert wire.parse_priority(value) == priority
