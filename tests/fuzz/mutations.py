"""Hypothesis strategies that damage valid encodings, shared by the fuzz tests.

Three families, each given a valid encoding (a "seed") to start from:

- ``byte_mutations``: flip, insert, delete, truncate, extend and splice bytes;
- ``pb_mutations``: parse the seed as its protobuf message, change 1..4 fields
  to values of the field's type (out-of-range enums, huge and negative
  integers, known ids, empty and duplicated repeated fields), and serialize
  again; signed parts that travel as bytes (envelope header, header context,
  statement, directory, tree head) are opened and mutated the same way, so a
  mutation can reach any layer;
- ``json_mutations`` / ``toml_mutations``: the same for JSON documents
  (keystore, directory draft) and TOML node configs, including values the
  formats accept but Python code chokes on (``Infinity``, ``NaN``, integers
  beyond 64 bits, very deep nesting).

``hostile_bytes`` adds hand-made nasties to pure random bytes (deeply nested
protobuf groups and messages, huge varint lengths). This module tests
nothing by itself and is not collected by pytest.
"""

from __future__ import annotations

import json
import tomllib
from typing import Any, Final

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError, Message
from hypothesis import strategies as st

from exchange._pb.liaison.v1 import audit_pb2, body_pb2, directory_pb2, envelope_pb2

__all__ = [
    "EMBEDDED",
    "byte_mutations",
    "hostile_bytes",
    "json_mutations",
    "mutate_bytes",
    "pb_mutations",
    "toml_mutations",
    "toml_text",
]

# Bytes fields that carry a serialized message (the signed parts): mutated as messages too.
EMBEDDED: Final[dict[tuple[str, str], type[Message]]] = {
    ("liaison.v1.Envelope", "header"): envelope_pb2.Header,
    ("liaison.v1.Header", "context"): envelope_pb2.HeaderContext,
    ("liaison.v1.SignedStatement", "statement"): body_pb2.Statement,
    ("liaison.v1.SignedDirectory", "directory"): directory_pb2.Directory,
    ("liaison.v1.SignedTreeHead", "tree_head"): audit_pb2.TreeHead,
}

_BOUNDS: Final = {
    FieldDescriptor.CPPTYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.CPPTYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.CPPTYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.CPPTYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.CPPTYPE_ENUM: (-(2**31), 2**31 - 1),
}


# --- bytes ------------------------------------------------------------------------------


def _nested(open_: bytes, close: bytes, depth: int) -> bytes:
    return open_ * depth + close * depth


def _nested_messages(field_tag: int, depth: int) -> bytes:
    """``depth`` length-delimited messages inside each other (each a field ``field_tag``)."""
    data = b""
    for _ in range(depth):
        data = bytes([field_tag]) + _varint(len(data)) + data
    return data


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


# Start/end group tags of field 15 (0x7b/0x7c), deep length-delimited nesting of fields 1 and 2,
# a length prefix of 2**63, ten-byte varints and lone continuation bytes.
_HOSTILE: Final = (
    _nested(b"\x7b", b"\x7c", 5000),
    b"\x7b" * 5000,
    _nested_messages(0x0A, 200),
    _nested_messages(0x12, 200),
    b"\x0a" + _varint(2**63) + b"x",
    b"\x08" + b"\xff" * 9 + b"\x01",
    b"\x08" + b"\xff" * 20,
    b"\x0a\x80",
    b"\x00",
    b"",
)


def hostile_bytes(max_size: int = 4096) -> st.SearchStrategy[bytes]:
    """Random bytes, plus the hand-made nasties above."""
    return st.one_of(st.binary(max_size=max_size), st.sampled_from(_HOSTILE))


@st.composite
def _byte_op(draw: st.DrawFn, data: bytes) -> bytes:
    n = len(data)
    op = draw(st.sampled_from(("flip", "set", "insert", "delete", "truncate", "extend", "splice")))
    at = draw(st.integers(0, max(n - 1, 0)))
    if op == "flip" and n:
        mask = draw(st.integers(1, 255))
        return data[:at] + bytes([data[at] ^ mask]) + data[at + 1 :]
    if op == "set" and n:
        return data[:at] + bytes([draw(st.sampled_from((0x00, 0x01, 0x7F, 0x80, 0xFF)))]) + data[at + 1 :]
    if op == "insert":
        return data[:at] + draw(st.binary(min_size=1, max_size=16)) + data[at:]
    if op == "delete" and n:
        return data[:at] + data[at + draw(st.integers(1, 16)) :]
    if op == "truncate":
        return data[:at]
    if op == "extend":
        return data + draw(st.binary(min_size=1, max_size=64))
    # splice: copy a slice of the seed somewhere else in it
    length = draw(st.integers(1, 64))
    return data[:at] + data[draw(st.integers(0, max(n - 1, 0))) :][:length] + data[at:]


@st.composite
def mutate_bytes(draw: st.DrawFn, data: bytes, max_ops: int = 4) -> bytes:
    """1..``max_ops`` byte-level mutations of ``data``."""
    for _ in range(draw(st.integers(1, max_ops))):
        data = draw(_byte_op(data))
    return data


def byte_mutations(seeds: list[bytes]) -> st.SearchStrategy[bytes]:
    return st.sampled_from(seeds).flatmap(mutate_bytes)


# --- protobuf ---------------------------------------------------------------------------


def _scalar(field: FieldDescriptor, hints: tuple[str, ...]) -> st.SearchStrategy[Any]:
    cpp = field.cpp_type
    if cpp in _BOUNDS:
        lo, hi = _BOUNDS[cpp]
        edges = [
            v for v in (0, 1, -1, 2, 3, 7, 1000, 2**31 - 1, 2**32 - 1, 2**63 - 1, lo, hi) if lo <= v <= hi
        ]
        return st.one_of(st.sampled_from(edges), st.integers(lo, hi))
    if cpp == FieldDescriptor.CPPTYPE_BOOL:
        return st.booleans()
    if cpp in (FieldDescriptor.CPPTYPE_DOUBLE, FieldDescriptor.CPPTYPE_FLOAT):
        return st.floats(allow_nan=True, allow_infinity=True, width=32)
    if cpp == FieldDescriptor.CPPTYPE_STRING and field.type == FieldDescriptor.TYPE_STRING:
        specials = ("", "x" * 64, "*", "ÿ", "\x00", "a" * 5000)
        return st.one_of(st.sampled_from(hints + specials), st.text(max_size=40))
    return st.one_of(
        st.binary(max_size=80),
        st.sampled_from((b"", b"\x00" * 32, b"\xff" * 33)),
        st.sampled_from(tuple(h.encode() for h in hints)) if hints else st.just(b"x"),
    )


def _mutate_field(draw: st.DrawFn, msg: Message, hints: tuple[str, ...], depth: int) -> None:
    fields = tuple(msg.DESCRIPTOR.fields)
    if not fields:
        return
    field = draw(st.sampled_from(fields))
    name = field.name
    if field.cpp_type == FieldDescriptor.CPPTYPE_MESSAGE:
        if field.is_repeated:
            items = getattr(msg, name)
            op = draw(st.sampled_from(("clear", "add", "mutate", "duplicate")))
            if op == "clear":
                del items[:]
            elif op == "add" or not items:
                _mutate_message(draw, items.add(), hints, depth + 1)
            elif op == "mutate":
                _mutate_message(draw, items[draw(st.integers(0, len(items) - 1))], hints, depth + 1)
            else:
                copy = items[draw(st.integers(0, len(items) - 1))]
                for _ in range(draw(st.sampled_from((1, 2, 8, 300)))):
                    items.add().CopyFrom(copy)
        elif draw(st.booleans()):
            msg.ClearField(name)
        else:
            _mutate_message(draw, getattr(msg, name), hints, depth + 1)
        return
    inner = EMBEDDED.get((msg.DESCRIPTOR.full_name, name))
    if inner is not None and depth < 4 and draw(st.booleans()):
        sub = inner()
        try:
            sub.ParseFromString(getattr(msg, name))
        except DecodeError:
            sub = inner()
        _mutate_message(draw, sub, hints, depth + 1)
        setattr(msg, name, sub.SerializeToString(deterministic=draw(st.booleans())))
        return
    values = _scalar(field, hints)
    try:
        if field.is_repeated:
            items = getattr(msg, name)
            op = draw(st.sampled_from(("clear", "append", "replace", "duplicate")))
            if op == "clear":
                del items[:]
            elif op == "append" or not items:
                items.append(draw(values))
            elif op == "replace":
                items[draw(st.integers(0, len(items) - 1))] = draw(values)
            else:
                items.append(items[draw(st.integers(0, len(items) - 1))])
        else:
            setattr(msg, name, draw(values))
    except (ValueError, TypeError):  # a value the field cannot hold (closed enum, float range)
        return


def _mutate_message(draw: st.DrawFn, msg: Message, hints: tuple[str, ...], depth: int) -> None:
    if depth > 6:
        return
    for _ in range(draw(st.integers(1, 2))):
        _mutate_field(draw, msg, hints, depth)


@st.composite
def _pb_mutation(
    draw: st.DrawFn, seed: bytes, message: type[Message], hints: tuple[str, ...], max_ops: int
) -> bytes:
    msg = message()
    msg.ParseFromString(seed)
    for _ in range(draw(st.integers(1, max_ops))):
        _mutate_field(draw, msg, hints, 0)
    out = msg.SerializeToString(deterministic=draw(st.booleans()))
    for _ in range(3):  # about one mutation in four is a no-op (clearing an unset field...)
        if out != seed:
            break
        _mutate_field(draw, msg, hints, 0)
        out = msg.SerializeToString(deterministic=True)
    return out


def pb_mutations(
    seeds: list[bytes], message: type[Message], hints: tuple[str, ...] = (), max_ops: int = 3
) -> st.SearchStrategy[bytes]:
    """Field-level mutations of ``seeds`` parsed as ``message``; ``hints`` are strings worth trying."""
    return st.sampled_from(seeds).flatmap(lambda s: _pb_mutation(s, message, hints, max_ops))


# --- documents (JSON, TOML) -----------------------------------------------------------

_DEEP: Final = "__deep__"

json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.sampled_from((2**63, -(2**63) - 1, 10**30, 0, -1)),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=20),
        st.just(_DEEP),
    ),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=8,
)

toml_values = st.recursive(
    st.one_of(
        st.booleans(),
        st.integers(),
        st.sampled_from((2**63, -(2**63) - 1, 10**30, 0, -1)),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=20),
        st.sampled_from(("", ".", "/", "..", "a\x00b", "/dev/null", "x" * 300, "classic", "hybrid-pq")),
        st.datetimes(),
        st.dates(),
        st.just(_DEEP),
    ),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=8,
)


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, (*prefix, i))
    return out


def _mutate_doc(draw: st.DrawFn, doc: Any, values: st.SearchStrategy[Any], max_ops: int) -> Any:
    """Replace, delete, insert or duplicate values at random paths of a parsed document."""
    for _ in range(draw(st.integers(1, max_ops))):
        path = draw(st.sampled_from(_paths(doc)))
        if not path:
            doc = draw(values)
            continue
        parent = doc
        for step in path[:-1]:
            parent = parent[step]
        last = path[-1]
        op = draw(st.sampled_from(("replace", "delete", "insert", "duplicate")))
        if op == "delete":
            del parent[last]
        elif op == "insert" and isinstance(parent, dict):
            parent[draw(st.text(max_size=12))] = draw(values)
        elif op == "duplicate" and isinstance(parent, list):
            parent.append(parent[last])
        else:
            parent[last] = draw(values)
    return doc


def _deepen(draw: st.DrawFn, text: str, quoted: str) -> str:
    depth = draw(st.sampled_from((2, 50, 5000)))
    return text.replace(quoted, "[" * depth + "]" * depth)


@st.composite
def _json_mutation(draw: st.DrawFn, text: str, max_ops: int) -> bytes:
    doc = _mutate_doc(draw, json.loads(text), json_values, max_ops)
    return _deepen(draw, json.dumps(doc, allow_nan=True), json.dumps(_DEEP)).encode()


def json_mutations(seeds: list[str], max_ops: int = 3) -> st.SearchStrategy[bytes]:
    """Structure-aware mutations of JSON documents (paths replaced, deleted, inserted)."""
    return st.sampled_from(seeds).flatmap(lambda s: _json_mutation(s, max_ops))


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return {"nan": "nan", "inf": "inf", "-inf": "-inf"}.get(repr(value), repr(value))
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in value.items()) + "}"
    return value.isoformat() if hasattr(value, "isoformat") else json.dumps(str(value))


def toml_text(doc: Any) -> str:
    """A TOML rendering of ``doc``: top-level scalars, then one [table] per dict (may be invalid TOML)."""
    if not isinstance(doc, dict):
        return f"value = {_toml_value(doc)}\n"
    lines = [f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in doc.items() if not isinstance(v, dict)]
    for name, table in doc.items():
        if isinstance(table, dict):
            lines.append(f"\n[{json.dumps(str(name))}]")
            lines += [f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


@st.composite
def _toml_mutation(draw: st.DrawFn, text: str, max_ops: int) -> bytes:
    doc = _mutate_doc(draw, tomllib.loads(text), toml_values, max_ops)
    return _deepen(draw, toml_text(doc), json.dumps(_DEEP)).encode()


def toml_mutations(seeds: list[str], max_ops: int = 3) -> st.SearchStrategy[bytes]:
    """Structure-aware mutations of TOML files (values of any TOML type, tables dropped or added)."""
    return st.sampled_from(seeds).flatmap(lambda s: _toml_mutation(s, max_ops))
