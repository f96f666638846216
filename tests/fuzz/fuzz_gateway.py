"""atheris harness: any NATS payload through the gateway's ``decide``.

``decide`` must never raise; an accepted envelope must carry a seed's exact
signed header and ciphertext; a forwarded receipt a seed's exact statement
bytes; every audit record must encode and decode back to itself. The claimed
office and whether the message is already in the log come from the first
input byte. Run: ``python tests/fuzz/fuzz_gateway.py -max_total_time=60``.
"""

from __future__ import annotations

from _harness import instrumented, run

with instrumented():
    from exchange import primitives
    from exchange.core.codec.envelope import encode_frame
    from gateway.audit.codec import decode_record, encode_record
    from gateway.decide import Accepted, Forward, Prior, Refused, Resume, decide
    from tests.fuzz.corpus import NOW_MS, RECIPIENTS, SENDER, build_corpus

CORPUS = build_corpus()
CLASSIC = CORPUS.envelopes["classic"]
ENVELOPES = {e.header_bytes: e for e in CORPUS.envelopes.values()}
OFFICES = (SENDER, RECIPIENTS[0], RECIPIENTS[1], "nobody")
PRIOR_ID = CLASSIC.header.context.message_id
PRIOR = Prior(7, SENDER, CLASSIC.header.context.recipients, primitives.sha256(CLASSIC.header_bytes), 7)


def test_one_input(data: bytes) -> None:
    if not data:
        return
    control, payload = data[0], data[1:]
    from_office = OFFICES[control & 3]
    logged = bool(control & 4)
    source_seq = 7 if control & 8 else 8
    decision = decide(
        payload,
        from_office=from_office,
        directory=CORPUS.directory,
        now_ms=NOW_MS,
        prior=lambda mid: PRIOR if logged and mid == PRIOR_ID else None,
        source_seq=source_seq,
    )
    if isinstance(decision, Accepted):
        original = ENVELOPES[decision.envelope.header_bytes]
        assert decision.envelope.ciphertext == original.ciphertext
        assert from_office == SENDER
    elif isinstance(decision, Resume):
        assert source_seq == PRIOR.source_seq
        assert decision.envelope.header_bytes == CLASSIC.header_bytes
        return
    elif isinstance(decision, Forward):
        assert decision.signed.statement_bytes == CORPUS.receipt.statement_bytes
        assert decision.to == SENDER
    else:
        assert isinstance(decision, Refused)
        assert decision.notify == from_office
    assert decode_record(encode_record(decision.record)) == decision.record


if __name__ == "__main__":
    seeds = [bytes([c]) + encode_frame(e) for e in CORPUS.envelopes.values() for c in (0, 12)]
    seeds += [bytes([c]) + encode_frame(CORPUS.receipt) for c in (1, 5)]
    run(test_one_input, seeds)
