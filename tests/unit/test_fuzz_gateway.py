"""Fuzz the gateway's whole decision function with random and mutated frames.

``gateway.decide.decide`` is the one place where bytes from an office meet
the gateway, so it must turn anything into a decision: it never raises. The
inputs are random payloads and mutations (byte-level and protobuf-aware, at
every layer: frame, envelope, header, header context, statement) of REAL
frames: sealed envelopes in both suites and a signed DELIVERED receipt
(``tests/fuzz/corpus.py``).

Properties:
- ``decide`` returns a Decision for any payload and any claimed office; a
  refusal carries a LiaisonError, names the office it came from, and its
  audit record encodes and decodes back to itself (the shell appends it);
- a mutated envelope is accepted only if its signed header and ciphertext
  are the original ones; with the original already in the log it is never
  accepted, and resumed only when its header digest matches;
- a mutated receipt is forwarded only if its signed statement bytes are the
  original ones, and only to the original sender.

Set ``LIAISON_FUZZ_SCALE`` (a multiplier) for a deeper run; the ``slow``
test runs the mixed property with many more examples.
"""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exchange._pb.liaison.v1 import transport_pb2
from exchange.core import errors, primitives
from exchange.core.codec.envelope import encode_frame
from exchange.core.envelope import Routed
from gateway.audit.codec import decode_record, encode_record
from gateway.decide import Accepted, Decision, Forward, Prior, Refused, Resume, decide
from tests.fuzz.corpus import NOW_MS, RECIPIENTS, SENDER, Corpus, build_corpus
from tests.fuzz.mutations import hostile_bytes, mutate_bytes, pb_mutations

SCALE = int(os.environ.get("LIAISON_FUZZ_SCALE", "1"))


def fuzz_settings(examples: int) -> settings:
    return settings(
        max_examples=examples * SCALE,
        deadline=timedelta(seconds=2),
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return build_corpus()


# The out-stream sequence of the logged frame: a redelivery comes with it, a replay with another.
PRIOR_SEQ = 7


def _prior_of(corpus: Corpus, label: str) -> Prior:
    envelope = corpus.envelopes[label]
    return Prior(
        log_index=7,
        sender=SENDER,
        recipients=envelope.header.context.recipients,
        header_digest=primitives.sha256(envelope.header_bytes),
        source_seq=PRIOR_SEQ,
    )


def check_decision(decision: Decision, from_office: str) -> None:
    """What holds for every decision, whatever the input."""
    if isinstance(decision, Refused):
        assert isinstance(decision.error, errors.LiaisonError)
        assert decision.notify == from_office
    if isinstance(decision, Resume):
        return
    assert decode_record(encode_record(decision.record)) == decision.record


def _mutated_frame(corpus: Corpus, data: st.DataObject, seed: bytes) -> bytes:
    if data.draw(st.booleans(), label="pb-aware"):
        return data.draw(pb_mutations([seed], transport_pb2.Frame, corpus.hints, max_ops=2))
    return data.draw(mutate_bytes(seed))


offices = st.sampled_from((SENDER, *RECIPIENTS, "gw-dushanbe", "nobody", ""))


@fuzz_settings(150)
@given(payload=hostile_bytes(), from_office=offices)
def test_random_payload_is_refused(corpus: Corpus, payload: bytes, from_office: str) -> None:
    decision = decide(
        payload, from_office=from_office, directory=corpus.directory, now_ms=NOW_MS, prior=lambda _: None
    )
    check_decision(decision, from_office)
    assert isinstance(decision, Refused)


def check_mutated_envelope(corpus: Corpus, data: st.DataObject) -> None:
    label = data.draw(st.sampled_from(sorted(corpus.envelopes)))
    original = corpus.envelopes[label]
    payload = _mutated_frame(corpus, data, encode_frame(original))
    from_office = data.draw(st.sampled_from((SENDER, SENDER, RECIPIENTS[0])), label="from")
    logged = data.draw(st.booleans(), label="already logged")
    source_seq = data.draw(st.sampled_from((0, PRIOR_SEQ, PRIOR_SEQ + 1)), label="out-stream sequence")
    prior = _prior_of(corpus, label) if logged else None
    message_id = original.header.context.message_id
    decision = decide(
        payload,
        from_office=from_office,
        directory=corpus.directory,
        now_ms=NOW_MS,
        prior=lambda mid: prior if mid == message_id else None,
        source_seq=source_seq,
    )
    check_decision(decision, from_office)
    if isinstance(decision, Accepted):
        assert not logged
        assert from_office == SENDER
        assert decision.envelope.header_bytes == original.header_bytes
        assert decision.envelope.ciphertext == original.ciphertext
    elif isinstance(decision, Resume):
        assert logged
        assert source_seq == PRIOR_SEQ
        assert decision.envelope.header_bytes == original.header_bytes
    else:
        assert not isinstance(decision, Forward)


@fuzz_settings(250)
@given(data=st.data())
def test_mutated_envelope_is_accepted_only_as_the_original(corpus: Corpus, data: st.DataObject) -> None:
    check_mutated_envelope(corpus, data)


def check_mutated_receipt(corpus: Corpus, data: st.DataObject) -> None:
    original = corpus.receipt
    payload = _mutated_frame(corpus, data, encode_frame(original))
    from_office = data.draw(st.sampled_from((RECIPIENTS[0], RECIPIENTS[0], RECIPIENTS[1], SENDER)))
    prior = _prior_of(corpus, "classic")
    decision = decide(
        payload,
        from_office=from_office,
        directory=corpus.directory,
        now_ms=NOW_MS,
        prior=lambda mid: prior if mid == original.statement.message_id else None,
    )
    check_decision(decision, from_office)
    if isinstance(decision, Forward):
        assert from_office == RECIPIENTS[0]
        assert decision.signed.statement_bytes == original.statement_bytes
        assert decision.to == SENDER
    else:
        assert isinstance(decision, Refused)


@fuzz_settings(150)
@given(data=st.data())
def test_mutated_receipt_is_forwarded_only_as_the_original(corpus: Corpus, data: st.DataObject) -> None:
    check_mutated_receipt(corpus, data)


@pytest.mark.parametrize(
    ("frame", "from_office", "logged", "source_seq", "expected"),
    [
        pytest.param("classic", SENDER, False, 1, Accepted, id="classic-accepted"),
        pytest.param("hybrid-pq", SENDER, False, 1, Accepted, id="hybrid-accepted"),
        pytest.param("classic", SENDER, True, PRIOR_SEQ, Resume, id="redelivery-resumed"),
        pytest.param("classic", SENDER, True, PRIOR_SEQ + 1, Refused, id="replay-refused"),
        pytest.param("classic", SENDER, True, 0, Refused, id="unknown-sequence-refused"),
        pytest.param("classic", RECIPIENTS[0], False, 1, Refused, id="other-office-refused"),
        pytest.param("receipt", RECIPIENTS[0], True, 1, Forward, id="receipt-forwarded"),
    ],
)
def test_unmutated_frames(
    corpus: Corpus, frame: str, from_office: str, logged: bool, source_seq: int, expected: type
) -> None:
    # The properties above would hold vacuously if the originals were refused.
    item = corpus.receipt if frame == "receipt" else corpus.envelopes[frame]
    prior = _prior_of(corpus, "classic" if frame == "receipt" else frame) if logged else None
    decision = decide(
        encode_frame(item),
        from_office=from_office,
        directory=corpus.directory,
        now_ms=NOW_MS,
        prior=lambda _: prior,
        source_seq=source_seq,
    )
    assert isinstance(decision, expected), decision
    check_decision(decision, from_office)
    if not isinstance(decision, Resume):
        assert decision.record.source_seq == source_seq  # the record links to the stream message


def test_routed_and_gateway_statements_from_an_office_are_refused(corpus: Corpus) -> None:
    routed = Routed(corpus.envelopes["classic"], corpus.stamp)
    for item in (routed, corpus.stamp, corpus.rejection):
        decision = decide(
            encode_frame(item),
            from_office=SENDER,
            directory=corpus.directory,
            now_ms=NOW_MS,
            prior=lambda _: None,
        )
        assert isinstance(decision, Refused)
        check_decision(decision, SENDER)


@pytest.mark.slow
@settings(
    max_examples=1500 * SCALE,
    deadline=timedelta(seconds=5),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_decide_deep(corpus: Corpus, data: st.DataObject) -> None:
    if data.draw(st.booleans()):
        check_mutated_envelope(corpus, data)
    else:
        check_mutated_receipt(corpus, data)
