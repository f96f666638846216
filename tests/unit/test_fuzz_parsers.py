"""Fuzz every parser of bytes from the network or disk: only documented errors, no hang.

Each parser gets three kinds of input: pure random bytes (plus hand-made
nasties such as 5000 nested protobuf groups), byte-level mutations of a
valid encoding (flip, insert, delete, truncate, extend, splice), and
structure-aware mutations (protobuf fields of every layer, JSON paths, TOML
values; see ``tests/fuzz/mutations.py``). The seeds are real: sealed
envelopes, signed statements, an m-of-n signed directory, a signed tree head
(``tests/fuzz/corpus.py``).

Properties:
- a decoder returns or raises its documented ``LiaisonError`` subclass,
  nothing else; what it returns re-encodes to the same value;
- a mutated signed input (envelope, statement, directory, tree head) never
  verifies unless its signed bytes are the original ones, and a mutated
  envelope never opens to another body;
- config, keystore and draft loaders raise only ConfigError / KeystoreError /
  DirectoryInvalidError;
- input over a size limit is refused (OversizeError) before parsing, fast.

Example counts are small so that the file runs in seconds; for a deeper
run set ``LIAISON_FUZZ_SCALE`` (a multiplier, e.g. 20) or use the atheris
harnesses in ``tests/fuzz/``.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exchange._pb.liaison.v1 import audit_pb2, body_pb2, directory_pb2, envelope_pb2, transport_pb2
from exchange.core import errors, identity, primitives
from exchange.core.codec import body as body_codec
from exchange.core.codec import directory as directory_codec
from exchange.core.codec import envelope as envelope_codec
from exchange.core.directory import verify_directory
from exchange.core.seal import open_envelope, verify_envelope, verify_statement
from exchange.office.config import load_office_config
from gateway.audit import codec as audit_codec
from gateway.audit.treehead import verify_cosignature
from gateway.config import load_gateway_config
from keys import keystore
from keys.directory_file import directory_to_json, load_draft
from tests.fuzz.corpus import NOW_MS, RECIPIENTS, Corpus, build_corpus
from tests.fuzz.mutations import (
    byte_mutations,
    hostile_bytes,
    json_mutations,
    mutate_bytes,
    pb_mutations,
    toml_mutations,
)

SCALE = int(os.environ.get("LIAISON_FUZZ_SCALE", "1"))


def fuzz_settings(examples: int, deadline_ms: int = 2000) -> settings:
    # The deadline catches a hang or a super-linear blow-up of one example; it is loose
    # because xdist runs two workers on two cores.
    return settings(
        max_examples=examples * SCALE,
        deadline=timedelta(milliseconds=deadline_ms),
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return build_corpus()


# --- decoders -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Decoder:
    decode: Callable[[bytes], Any]
    documented: tuple[type[errors.LiaisonError], ...]
    message: type[Any]  # the protobuf message of its input
    encode: Callable[[Any], bytes] | None  # round-trip check of what it returns
    limit: int


def _encode_signed_directory(value: Any) -> bytes:
    raw, _directory, signatures = value
    return directory_codec.encode_signed_directory(raw, signatures)


def _decode_stats(data: bytes) -> Any:
    # What the audit client does with a Stats answer from the gateway.
    response = envelope_codec.parse_limited(audit_pb2.StatsResponse(), data, 1 << 20, "stats")
    return audit_codec.stats_from_pb(response)


def _encode_stats(rows: Any) -> bytes:
    return audit_codec.stats_to_pb(rows).SerializeToString()


_CODEC = (errors.CodecError,)
_DIRECTORY = (errors.CodecError, errors.DirectoryInvalidError)
DECODERS: dict[str, Decoder] = {
    "envelope": Decoder(
        envelope_codec.decode_envelope,
        _CODEC,
        envelope_pb2.Envelope,
        envelope_codec.encode_envelope,
        envelope_codec.MAX_ENVELOPE_BYTES,
    ),
    "header": Decoder(
        envelope_codec.decode_header,
        _CODEC,
        envelope_pb2.Header,
        envelope_codec.encode_header,
        envelope_codec.MAX_HEADER_BYTES,
    ),
    "header_context": Decoder(
        envelope_codec.decode_header_context,
        _CODEC,
        envelope_pb2.HeaderContext,
        envelope_codec.encode_header_context,
        envelope_codec.MAX_CONTEXT_BYTES,
    ),
    "frame": Decoder(
        envelope_codec.decode_frame,
        _CODEC,
        transport_pb2.Frame,
        envelope_codec.encode_frame,
        envelope_codec.MAX_FRAME_BYTES,
    ),
    "signed_statement": Decoder(
        envelope_codec.decode_signed_statement,
        _CODEC,
        body_pb2.SignedStatement,
        envelope_codec.encode_signed_statement,
        envelope_codec.MAX_SIGNED_STATEMENT_BYTES,
    ),
    "statement": Decoder(
        envelope_codec.decode_statement,
        _CODEC,
        body_pb2.Statement,
        envelope_codec.encode_statement,
        envelope_codec.MAX_STATEMENT_BYTES,
    ),
    "body": Decoder(
        body_codec.decode_body, _CODEC, body_pb2.Body, body_codec.encode_body, body_codec.MAX_BODY_BYTES
    ),
    "directory": Decoder(
        directory_codec.decode_directory,
        _DIRECTORY,
        directory_pb2.Directory,
        directory_codec.encode_directory,
        directory_codec.MAX_DIRECTORY_BYTES,
    ),
    "signed_directory": Decoder(
        directory_codec.decode_signed_directory,
        _DIRECTORY,
        directory_pb2.SignedDirectory,
        _encode_signed_directory,
        directory_codec.MAX_SIGNED_DIRECTORY_BYTES,
    ),
    "record": Decoder(
        audit_codec.decode_record,
        _CODEC,
        audit_pb2.AuditRecord,
        audit_codec.encode_record,
        audit_codec.MAX_RECORD_BYTES,
    ),
    "signed_tree_head": Decoder(
        audit_codec.decode_signed_tree_head,
        _CODEC,
        audit_pb2.SignedTreeHead,
        audit_codec.encode_signed_tree_head,
        audit_codec.MAX_TREE_HEAD_BYTES,
    ),
    "stats_response": Decoder(_decode_stats, _CODEC, audit_pb2.StatsResponse, _encode_stats, 1 << 20),
}


def check_decoder(decoder: Decoder, data: bytes) -> None:
    """The property: a value that re-encodes to itself, or a documented error; nothing else."""
    try:
        value = decoder.decode(data)
    except decoder.documented:
        return
    if decoder.encode is not None:
        assert decoder.decode(decoder.encode(value)) == value


@pytest.mark.parametrize("name", DECODERS)
@fuzz_settings(80)
@given(data=hostile_bytes())
def test_decoder_random_bytes(name: str, data: bytes) -> None:
    check_decoder(DECODERS[name], data)


@pytest.mark.parametrize("name", DECODERS)
@fuzz_settings(80)
@given(data=st.data())
def test_decoder_byte_mutations(name: str, corpus: Corpus, data: st.DataObject) -> None:
    check_decoder(DECODERS[name], data.draw(byte_mutations(corpus.seeds[name])))


@pytest.mark.parametrize("name", DECODERS)
@fuzz_settings(80)
@given(data=st.data())
def test_decoder_pb_mutations(name: str, corpus: Corpus, data: st.DataObject) -> None:
    decoder = DECODERS[name]
    check_decoder(decoder, data.draw(pb_mutations(corpus.seeds[name], decoder.message, corpus.hints)))


@pytest.mark.slow
@fuzz_settings(2000, deadline_ms=5000)
@given(data=st.data())
def test_decoders_deep(corpus: Corpus, data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(sorted(DECODERS)))
    decoder = DECODERS[name]
    strategy = data.draw(st.sampled_from(("random", "bytes", "pb")))
    if strategy == "random":
        payload = data.draw(hostile_bytes())
    elif strategy == "bytes":
        payload = data.draw(byte_mutations(corpus.seeds[name]))
    else:
        payload = data.draw(pb_mutations(corpus.seeds[name], decoder.message, corpus.hints))
    check_decoder(decoder, payload)


def test_every_seed_decodes(corpus: Corpus) -> None:
    # Mutating seeds that never parsed would test nothing.
    for name, decoder in DECODERS.items():
        for seed in corpus.seeds[name]:
            check_decoder(dataclasses.replace(decoder, documented=()), seed)


@pytest.mark.parametrize("name", DECODERS)
def test_decoder_refuses_oversize_before_parsing(name: str) -> None:
    decoder = DECODERS[name]
    data = b"\x0a" * (decoder.limit + 1)
    started = time.monotonic()
    with pytest.raises(errors.OversizeError):
        decoder.decode(data)
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize("name", DECODERS)
def test_decoder_large_random_input_is_fast(name: str) -> None:
    decoder = DECODERS[name]
    for data in (os.urandom(1 << 20), b"\x7b" * 200_000 + b"\x7c" * 200_000, b"\x0a\x80" * 100_000):
        started = time.monotonic()
        check_decoder(decoder, data[: decoder.limit])
        assert time.monotonic() - started < 2.0


# --- signed inputs: a mutation never verifies as something else ------------------------------

_ENVELOPE_ERRORS = (errors.EnvelopeError, errors.CodecError)


def _mutated(data: st.DataObject, seed: bytes, message: type[Any], corpus: Corpus) -> bytes:
    if data.draw(st.booleans(), label="pb-aware"):
        return data.draw(pb_mutations([seed], message, corpus.hints))
    return data.draw(mutate_bytes(seed))


@fuzz_settings(150)
@given(data=st.data())
def test_mutated_envelope_never_verifies_or_opens_as_another(corpus: Corpus, data: st.DataObject) -> None:
    label = data.draw(st.sampled_from(sorted(corpus.envelopes)))
    original = corpus.envelopes[label]
    wire = _mutated(data, envelope_codec.encode_envelope(original), envelope_pb2.Envelope, corpus)
    try:
        verified = verify_envelope(wire, directory=corpus.directory, now_ms=NOW_MS)
    except _ENVELOPE_ERRORS:
        pass
    else:
        assert verified.envelope.header_bytes == original.header_bytes
        assert verified.envelope.ciphertext == original.ciphertext
    me = RECIPIENTS[0]
    try:
        opened = open_envelope(
            wire, me=me, my_keys=corpus.offices[me].encryption, directory=corpus.directory, now_ms=NOW_MS
        )
    except _ENVELOPE_ERRORS:
        return
    assert opened.body == corpus.bodies[label]
    assert opened.header.envelope.header_bytes == original.header_bytes


@fuzz_settings(120)
@given(data=st.data())
def test_mutated_statement_never_verifies_as_another(corpus: Corpus, data: st.DataObject) -> None:
    original = data.draw(st.sampled_from((corpus.receipt, corpus.stamp, corpus.rejection)))
    wire = _mutated(data, envelope_codec.encode_signed_statement(original), body_pb2.SignedStatement, corpus)
    try:
        statement = verify_statement(wire, directory=corpus.directory, now_ms=NOW_MS)
    except _ENVELOPE_ERRORS:
        return
    assert envelope_codec.decode_signed_statement(wire).statement_bytes == original.statement_bytes
    assert statement == original.statement


@fuzz_settings(100, deadline_ms=4000)
@given(data=st.data())
def test_mutated_directory_never_verifies_as_another(corpus: Corpus, data: st.DataObject) -> None:
    # v2 against the trusted v1 (an update), v1 against the pinned anchor (first start).
    update = data.draw(st.booleans(), label="update")
    seed = corpus.signed_v2 if update else corpus.signed_v1
    wire = _mutated(data, seed, directory_pb2.SignedDirectory, corpus)
    try:
        signed = verify_directory(
            wire, trusted=corpus.trusted if update else None, anchor=None if update else corpus.anchor
        )
    except (errors.DirectoryError, errors.CodecError):
        return
    assert signed.raw == directory_codec.decode_signed_directory(seed)[0]


@fuzz_settings(100)
@given(data=st.data())
def test_mutated_tree_head_never_verifies_as_another(corpus: Corpus, data: st.DataObject) -> None:
    original = corpus.tree_head
    wire = _mutated(data, audit_codec.encode_signed_tree_head(original), audit_pb2.SignedTreeHead, corpus)
    try:
        head = audit_codec.decode_signed_tree_head(wire)
        head.verify(corpus.directory)
    except errors.CodecError:
        return
    except errors.SignatureError:
        head = None
    if head is not None:
        assert head.tree_head_bytes == original.tree_head_bytes
    try:
        head = audit_codec.decode_signed_tree_head(wire)
        for cosignature in head.cosignatures:
            verify_cosignature(head, cosignature, corpus.trusted)
    except (errors.CodecError, errors.SignatureError):
        return
    if head.cosignatures:
        assert head.tree_head_bytes == original.tree_head_bytes


def test_originals_verify(corpus: Corpus) -> None:
    # The properties above are vacuous unless the unmutated inputs pass.
    for label, envelope in corpus.envelopes.items():
        wire = envelope_codec.encode_envelope(envelope)
        verify_envelope(wire, directory=corpus.directory, now_ms=NOW_MS)
        me = RECIPIENTS[1]
        opened = open_envelope(
            wire, me=me, my_keys=corpus.offices[me].encryption, directory=corpus.directory, now_ms=NOW_MS
        )
        assert opened.body == corpus.bodies[label]
    for signed in (corpus.receipt, corpus.stamp, corpus.rejection):
        verify_statement(
            envelope_codec.encode_signed_statement(signed), directory=corpus.directory, now_ms=NOW_MS
        )
    verify_directory(corpus.signed_v1, trusted=None, anchor=corpus.anchor)
    verify_directory(corpus.signed_v2, trusted=corpus.trusted, anchor=None)
    corpus.tree_head.verify(corpus.directory)
    verify_cosignature(corpus.tree_head, corpus.tree_head.cosignatures[0], corpus.trusted)


# --- files on disk: configs, keystores, directory drafts -----------------------------------

OFFICE_TOML = """[office]
id = "ru-mvd-dushanbe"
store = "office.db"
suite = "hybrid-pq"

[keys]
dir = "keys"
passphrase_file = "passphrase"

[directory]
file = "directory.pb"

[nats]
url = "nats://127.0.0.1:4222"
user = "office"
password = "secret"
ca = "ca.pem"
cert = "cert.pem"
key = "key.pem"

[grpc]
listen = "127.0.0.1:50051"

[tls]
ca = "ca.pem"
cert = "server.pem"
key = "server-key.pem"
clients = ["ru-mvd-dushanbe-agency"]

[metrics]
listen = "127.0.0.1:9464"
"""

GATEWAY_TOML = """[gateway]
id = "gw-dushanbe"

[audit]
store = "audit.db"
postgres_dsn = ""
tree_head_interval_s = 1.5

[keys]
dir = "keys"

[directory]
file = "directory.pb"

[nats]
url = "nats://127.0.0.1:4222"
creds = "gw.creds"

[grpc]
listen = "127.0.0.1:50052"

[console]
listen = "127.0.0.1:8080"
token_file = "console.token"

[metrics]
listen = "[::1]:9465"
"""

LOADERS: dict[str, Callable[[Path], Any]] = {"office": load_office_config, "gateway": load_gateway_config}
TOML_SEEDS = {"office": OFFICE_TOML, "gateway": GATEWAY_TOML}


def check_config(kind: str, path: Path, data: bytes) -> None:
    path.write_bytes(data)
    try:
        config = LOADERS[kind](path)
    except errors.ConfigError:
        return
    assert config.store.is_absolute()
    assert config.keys_dir.is_absolute()
    if kind == "gateway":
        assert 0 < config.tree_head_interval_s < float("inf")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-files")


def test_config_seeds_load(files: Path) -> None:
    for kind, text in TOML_SEEDS.items():
        path = files / f"seed-{kind}.toml"
        path.write_text(text)
        LOADERS[kind](path)


_CONFIG_STRATEGIES = {
    "random": lambda kind: hostile_bytes(2048),
    "bytes": lambda kind: byte_mutations([TOML_SEEDS[kind].encode()]),
    "toml": lambda kind: toml_mutations([TOML_SEEDS[kind]]),
}


@pytest.mark.parametrize("strategy", _CONFIG_STRATEGIES)
@pytest.mark.parametrize("kind", LOADERS)
@fuzz_settings(70)
@given(data=st.data())
def test_config_only_config_errors(kind: str, strategy: str, files: Path, data: st.DataObject) -> None:
    check_config(kind, files / f"{kind}-{strategy}.toml", data.draw(_CONFIG_STRATEGIES[strategy](kind)))


PASSPHRASE = b"correct horse battery staple"


@pytest.fixture(scope="module")
def keystore_text(files: Path) -> str:
    # Cheapest scrypt the format accepts, so that examples that reach it stay fast.
    with mock.patch.object(primitives, "_PASS_LOG2_N", 10):
        path = keystore.create(
            files / "seed-keystore", identity.generate("ru-mvd-dushanbe", NOW_MS), PASSPHRASE
        )
    return path.read_text()


def _mutate_sealed(data: st.DataObject, text: str) -> bytes:
    """Mutate the bytes inside the base64 ``sealed`` blob (version, scrypt costs, salt, tag)."""
    doc = json.loads(text)
    blob = base64.b64decode(doc["sealed"])
    doc["sealed"] = base64.b64encode(data.draw(mutate_bytes(blob))).decode()
    return json.dumps(doc).encode()


_KEYSTORE_STRATEGIES: dict[str, Callable[[st.DataObject, str], bytes]] = {
    "random": lambda data, text: data.draw(hostile_bytes(2048)),
    "bytes": lambda data, text: data.draw(mutate_bytes(text.encode())),
    "json": lambda data, text: data.draw(json_mutations([text])),
    "sealed": _mutate_sealed,
}


@pytest.mark.parametrize("strategy", _KEYSTORE_STRATEGIES)
@fuzz_settings(50)
@given(data=st.data())
def test_keystore_only_keystore_errors(
    strategy: str, files: Path, keystore_text: str, data: st.DataObject
) -> None:
    directory = files / f"keystore-{strategy}"
    directory.mkdir(exist_ok=True)
    (directory / keystore.KEYSTORE_FILE).write_bytes(_KEYSTORE_STRATEGIES[strategy](data, keystore_text))
    # Bound scrypt for the fuzz run: a mutated header may ask for the format's maximum cost.
    with (
        mock.patch.object(primitives, "_PASS_MAX_LOG2_N", 11),
        mock.patch.object(primitives, "_PASS_MAX_WORK", 1 << 14),
    ):
        try:
            opened = keystore.open_keystore(directory, PASSPHRASE)
        except errors.KeystoreError:
            return
    assert opened.keys


def test_keystore_seed_opens(files: Path, keystore_text: str) -> None:
    assert keystore.open_keystore(files / "seed-keystore", PASSPHRASE).owner_id == "ru-mvd-dushanbe"


@pytest.fixture(scope="module")
def draft_text(corpus: Corpus) -> str:
    return json.dumps(directory_to_json(corpus.trusted))


_DRAFT_STRATEGIES: dict[str, Callable[[st.DataObject, str], bytes]] = {
    "random": lambda data, text: data.draw(hostile_bytes(2048)),
    "bytes": lambda data, text: data.draw(mutate_bytes(text.encode())),
    "json": lambda data, text: data.draw(json_mutations([text])),
}


@pytest.mark.parametrize("strategy", _DRAFT_STRATEGIES)
@fuzz_settings(60)
@given(data=st.data())
def test_draft_only_directory_errors(
    strategy: str, files: Path, draft_text: str, data: st.DataObject
) -> None:
    path = files / f"draft-{strategy}.json"
    path.write_bytes(_DRAFT_STRATEGIES[strategy](data, draft_text))
    try:
        load_draft(path)
    except (errors.DirectoryInvalidError, errors.ConfigError):
        return


def test_draft_seed_loads(files: Path, draft_text: str, corpus: Corpus) -> None:
    path = files / "seed-draft.json"
    path.write_text(draft_text)
    assert load_draft(path) == corpus.trusted


# --- regressions found by these fuzzers (each was a raw exception before its fix) ------------


@pytest.mark.parametrize(
    ("kind", "content"),
    [
        pytest.param("office", b"\xff\xfe = 1", id="toml-not-utf8"),
        pytest.param("office", b"a = " + b"[" * 2000 + b"]" * 2000, id="toml-nested-too-deep"),
        pytest.param("office", OFFICE_TOML.replace('"keys"', '"k\\u0000"').encode(), id="path-with-nul"),
        pytest.param("gateway", GATEWAY_TOML.replace("= 1.5", "= nan").encode(), id="tree-head-interval-nan"),
        pytest.param("gateway", GATEWAY_TOML.replace("= 1.5", "= inf").encode(), id="tree-head-interval-inf"),
        pytest.param(
            "gateway", GATEWAY_TOML.replace("= 1.5", "= 1" + "0" * 400).encode(), id="tree-head-interval-huge"
        ),
        pytest.param(
            "gateway", GATEWAY_TOML.replace(":9465", ":\u00b2").encode(), id="metrics-port-superscript"
        ),
        pytest.param(
            "gateway", GATEWAY_TOML.replace(":9465", ":" + "0" * 5000).encode(), id="metrics-port-long"
        ),
    ],
)
def test_config_regressions(files: Path, kind: str, content: bytes) -> None:
    path = files / f"regression-{kind}.toml"
    path.write_bytes(content)
    with pytest.raises(errors.ConfigError):
        LOADERS[kind](path)


def test_stats_with_an_unknown_enum_value_is_a_codec_error() -> None:
    response = audit_pb2.StatsResponse(rows=[audit_pb2.StatsRow(sender="a", kind=99, count=1)])  # type: ignore[arg-type]
    with pytest.raises(errors.CodecError, match="unknown Kind value 99"):
        _decode_stats(response.SerializeToString())


def test_config_that_is_a_directory(files: Path) -> None:
    with pytest.raises(errors.ConfigError, match="cannot read"):
        load_office_config(files)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        pytest.param("not_before_ms", "Infinity", id="infinite-int"),
        pytest.param("keys", "[" * 5000 + "]" * 5000, id="nested-too-deep"),
    ],
)
def test_keystore_regressions(files: Path, keystore_text: str, field: str, value: str) -> None:
    doc = json.loads(keystore_text)
    marker = "__value__"
    if field == "keys":
        doc["keys"] = marker
    else:
        doc["keys"][0][field] = marker
    directory = files / f"keystore-regression-{field}"
    directory.mkdir(exist_ok=True)
    (directory / keystore.KEYSTORE_FILE).write_text(json.dumps(doc).replace(json.dumps(marker), value))
    with pytest.raises(errors.KeystoreError):
        keystore.open_keystore(directory, PASSPHRASE)


def test_keystore_refuses_scrypt_cost_beyond_the_bound() -> None:
    # n = 2**20, r = 32, p = 16 passed each single bound: 4 GiB and minutes of scrypt.
    blob = bytes([1, 20, 32, 16]) + b"s" * 16 + b"\0" * 40
    started = time.monotonic()
    with pytest.raises(errors.KeystoreError, match="scrypt parameters"):
        primitives.passphrase_open(blob, PASSPHRASE)
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(
            '{"format": "liaison-directory-draft-v1", "deployment": "x", "version": Infinity}',
            id="infinite-int",
        ),
        pytest.param("[" * 5000 + "]" * 5000, id="nested-too-deep"),
    ],
)
def test_draft_regressions(files: Path, content: str) -> None:
    path = files / "draft-regression.json"
    path.write_text(content)
    with pytest.raises(errors.DirectoryInvalidError):
        load_draft(path)
