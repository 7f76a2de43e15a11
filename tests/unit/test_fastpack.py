"""The hot paths' msgpack (ormsgpack first): same bytes, same values, same errors as msgpack-python."""

from __future__ import annotations

import dataclasses
import datetime
import enum
import random
import uuid

import msgpack
import pytest
import zmq

from llmos_actors._wire import fastpack
from llmos_actors._wire.codec import Codec
from llmos_actors.errors import ProtocolError


def _value(rng: random.Random, depth: int = 0):
    choice = rng.randrange(9 if depth < 3 else 6)
    if choice == 0:
        return rng.choice(
            [0, 1, -1, 127, 128, 255, 256, -32, -33, -129, 65536, 2**32, -(2**31) - 1, 2**63 - 1, 2**64 - 1]
        )
    if choice == 1:
        return rng.random() * 10 ** rng.randrange(-5, 300)
    if choice == 2:
        return "x" * rng.choice([0, 1, 31, 32, 255, 256, 65536])
    if choice == 3:
        return b"y" * rng.choice([0, 1, 255, 256, 65536])
    if choice == 4:
        return rng.choice([None, True, False])
    if choice == 5:
        return "é€" * rng.randrange(40)
    if choice == 6:
        return [_value(rng, depth + 1) for _ in range(rng.choice([0, 1, 15, 16, 20]))]
    if choice == 7:
        return {str(i): _value(rng, depth + 1) for i in range(rng.choice([0, 1, 15, 16, 17]))}
    return {i: _value(rng, depth + 1) for i in range(3)}  # int keys


def test_implementation_is_ormsgpack():
    assert fastpack.IMPLEMENTATION == "ormsgpack"  # a dependency: the fast path is what ships


def test_same_bytes_and_values_as_msgpack():
    rng = random.Random(7)
    for _ in range(2000):
        value = _value(rng)
        packed = fastpack.packb(value)
        assert packed == msgpack.packb(value)
        assert fastpack.unpackb(packed) == msgpack.unpackb(packed, strict_map_key=False)


class Colour(enum.Enum):
    RED = 1


@dataclasses.dataclass
class Point:
    x: int


@pytest.mark.parametrize(
    "value", [datetime.datetime(2026, 1, 1), uuid.UUID(int=5), Colour.RED, Point(1), 2**70, {"k": object()}]
)
def test_what_msgpack_refuses_is_refused_the_same_way(value):
    with pytest.raises(Exception) as ours:
        fastpack.packb(value)
    with pytest.raises(Exception) as reference:
        msgpack.packb(value)
    assert type(ours.value) is type(reference.value)


def test_buffers_of_every_kind_are_read():
    packed = msgpack.packb({"a": [1, 2]})
    for raw in (packed, bytearray(packed), memoryview(packed), zmq.Frame(packed)):
        assert fastpack.unpackb(raw) == {"a": [1, 2]}


def test_extension_types_without_a_hook_come_back_as_ExtType():
    packed = msgpack.packb([msgpack.ExtType(9, b"abc")])
    assert fastpack.unpackb(packed) == [msgpack.ExtType(9, b"abc")]


def test_an_ext_hooks_own_exception_is_raised_and_each_hook_runs_once():
    seen = []

    def hook(code, data):
        seen.append(code)
        if code == 2:
            raise KeyError("no such buffer")
        return data

    packed = msgpack.packb([msgpack.ExtType(1, b"a"), msgpack.ExtType(2, b"b")])
    with pytest.raises(KeyError, match="no such buffer"):
        fastpack.unpackb(packed, hook)
    assert seen == [1, 2]


def test_after_hooks_ran_bad_bytes_are_not_read_twice():
    seen = []
    packed = msgpack.packb([msgpack.ExtType(1, b"a"), 0])[:-1] + b"\xc1"  # a valid ext, then garbage
    with pytest.raises(ValueError):
        fastpack.unpackb(packed, lambda code, data: seen.append(code))
    assert seen == [1]  # a hook may take a page lease: it must not run twice


@pytest.mark.parametrize("raw", [b"\xc1", b"\x92\x01", b"\xdd\xff\xff\xff\xff"])
def test_malformed_bytes_raise_value_errors(raw):
    with pytest.raises(ValueError):
        fastpack.unpackb(raw)
    with pytest.raises(ProtocolError, match="malformed message body"):
        Codec().unpack(raw)


def test_deep_nesting_falls_back_to_msgpack():
    value: list = []
    for _ in range(400):  # deeper than ormsgpack goes, within msgpack's limit
        value = [value]
    packed = msgpack.packb(value)
    assert fastpack.packb(value) == packed
    assert fastpack.unpackb(packed) == value
