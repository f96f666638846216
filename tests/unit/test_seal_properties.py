"""Properties: any body to any recipient subset round-trips; no single byte flip ever opens."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exchange.core import errors
from exchange.core.codec.envelope import encode_envelope
from exchange.core.model import Alert, AlertCategory, Attachment, CaseMessage, Priority, Suite
from exchange.core.seal import open_envelope, seal

NOW = 1_760_000_000_000
SENDER = "ru-mvd-dushanbe"
OTHERS = ("tj-mvd-moscow", "tj-labour-moscow", "ru-embassy-dushanbe")
SETTINGS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

texts = st.text(max_size=200)
attachments = st.lists(
    st.builds(
        Attachment,
        name=st.text(max_size=20),
        media_type=st.just("application/octet-stream"),
        content=st.binary(max_size=2000),
    ),
    max_size=2,
).map(tuple)
bodies = st.one_of(
    st.builds(
        Alert,
        category=st.sampled_from(AlertCategory),
        priority=st.sampled_from(Priority),
        subject=texts,
        text=texts,
        attachments=attachments,
    ),
    st.builds(
        CaseMessage,
        case_id=st.text(st.characters(exclude_categories=("Cc", "Cs")), min_size=1, max_size=40),
        text=texts,
        thread=texts,
        attachments=attachments,
    ),
)
recipient_sets = st.lists(st.sampled_from(OTHERS), min_size=1, max_size=3, unique=True).map(tuple)
suites = st.sampled_from(Suite)


def _seal(offices, directory, body, recipients, suite):
    return seal(
        body,
        sender=SENDER,
        sender_keys=offices[SENDER].signing,
        recipients=recipients,
        directory=directory,
        suite=suite,
        now_ms=NOW,
        ttl_s=600,
    )


@SETTINGS
@given(body=bodies, recipients=recipient_sets, suite=suites)
def test_any_body_round_trips(offices, directory, body, recipients, suite):
    wire = encode_envelope(_seal(offices, directory, body, recipients, suite))
    for me in recipients:
        opened = open_envelope(wire, me=me, my_keys=offices[me].encryption, directory=directory, now_ms=NOW)
        assert opened.body == body
    for outsider in set(OTHERS) - set(recipients):
        with pytest.raises(errors.NotARecipientError):
            open_envelope(
                wire, me=outsider, my_keys=offices[outsider].encryption, directory=directory, now_ms=NOW
            )


@pytest.fixture(scope="module")
def sealed(offices, directory):
    body = CaseMessage(case_id="c-7", text="property test body " * 20)
    return {suite: encode_envelope(_seal(offices, directory, body, OTHERS[:2], suite)) for suite in Suite}


@SETTINGS
@given(suite=suites, where=st.floats(min_value=0.0, max_value=1.0, exclude_max=True), bit=st.integers(0, 7))
def test_no_bit_flip_opens(offices, directory, sealed, suite, where, bit):
    wire = sealed[suite]
    i = int(len(wire) * where)
    flipped = wire[:i] + bytes([wire[i] ^ (1 << bit)]) + wire[i + 1 :]
    with pytest.raises(errors.LiaisonError):
        open_envelope(
            flipped, me=OTHERS[0], my_keys=offices[OTHERS[0]].encryption, directory=directory, now_ms=NOW
        )
