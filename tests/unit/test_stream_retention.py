"""The pure part of the retention move: subject matching and what is left unconsumed (ADR 0006)."""

from __future__ import annotations

import pytest

from exchange.nats.retention import ConsumerView, subject_matches, unconsumed


@pytest.mark.parametrize(
    ("pattern", "subject", "matches"),
    [
        pytest.param("liaison.v1.out.a", "liaison.v1.out.a", True, id="exact"),
        pytest.param("liaison.v1.out.a", "liaison.v1.out.b", False, id="other-office"),
        pytest.param("liaison.v1.out.*", "liaison.v1.out.a", True, id="star"),
        pytest.param("liaison.v1.out.*", "liaison.v1.out.a.b", False, id="star-is-one-token"),
        pytest.param("liaison.v1.out.>", "liaison.v1.out.a.b", True, id="gt-many"),
        pytest.param("liaison.v1.out.>", "liaison.v1.out", False, id="gt-needs-one"),
        pytest.param("liaison.v1.out.a", "liaison.v1.out", False, id="shorter-subject"),
        pytest.param("liaison.v1.out", "liaison.v1.out.a", False, id="longer-subject"),
    ],
)
def test_subject_matches(pattern: str, subject: str, matches: bool) -> None:
    assert subject_matches(pattern, subject) is matches


A, B = "liaison.v1.out.a", "liaison.v1.out.b"


def _c(name: str, filters: tuple[str, ...], pending: int = 0, ack_pending: int = 0) -> ConsumerView:
    return ConsumerView(name, filters, pending, ack_pending)


@pytest.mark.parametrize(
    ("consumers", "left"),
    [
        pytest.param([_c("gateway-a", (A,)), _c("gateway-b", (B,))], {}, id="all-caught-up"),
        pytest.param([_c("gateway-a", (A,))], {B: 2}, id="subject-without-consumer"),
        pytest.param([_c("gateway-a", (A,), pending=1), _c("gateway-b", (B,))], {A: 3}, id="pending"),
        pytest.param([_c("gateway-a", (A,)), _c("gateway-b", (B,), ack_pending=1)], {B: 2}, id="unacked"),
        pytest.param([_c("all", ())], {}, id="unfiltered-consumer-covers-all"),
        pytest.param([_c("all", ("liaison.v1.out.>",))], {}, id="wildcard-consumer"),
        pytest.param(
            [_c("old", (A,), pending=4), _c("new", (A,)), _c("gateway-b", (B,))],
            {},
            id="one-caught-up-is-enough",
        ),
        pytest.param([], {A: 3, B: 2}, id="no-consumers"),
    ],
)
def test_unconsumed(consumers: list[ConsumerView], left: dict[str, int]) -> None:
    assert unconsumed({A: 3, B: 2, "liaison.v1.out.c": 0}, consumers) == left
