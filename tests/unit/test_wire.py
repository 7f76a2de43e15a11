"""The wire format without sockets: headers, batches, bodies, ext types, errors."""

from __future__ import annotations

import gc
import weakref

import msgpack
import numpy as np
import pytest
import torch

from llmos_actors._wire import protocol as P
from llmos_actors._wire.address import ActorAddress
from llmos_actors._wire.codec import EXT_REF, Codec, error_from_payload, error_payload
from llmos_actors.errors import ActorDiedError, MethodNotFound, ProtocolError, RemoteError


def test_request_header_round_trip():
    head = P.parse_header(P.request_header("call", 7, "incr", 3, 12.5, {"objective": 2.0}))
    assert head == {"v": 1, "kind": "call", "id": 7, "method": "incr", "prio": 3, "deadline": 12.5, "objective": 2.0}


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"\xc1", "malformed header"),
        (msgpack.packb([1]), "must be a msgpack map"),
        (msgpack.packb({"v": 2, "kind": "call", "id": 1}), "unsupported protocol version 2"),
        (msgpack.packb({"v": 1, "id": 1}), "kind"),
        (msgpack.packb({"v": 1, "kind": "call", "id": "x"}), "id"),
    ],
)
def test_bad_headers(raw, message):
    with pytest.raises(ProtocolError, match=message):
        P.parse_header(raw)


@pytest.mark.parametrize("n", [1, 15, 16, 600, 70000])
def test_batch_body_is_a_msgpack_array_of_pairs(n):
    items = [P.batch_item(P.reply_header("ok", i), msgpack.packb(i * 2)) for i in range(n)]
    decoded = msgpack.unpackb(P.batch_body(items))
    assert len(decoded) == n
    assert decoded[-1][0]["id"] == n - 1 and decoded[-1][1] == (n - 1) * 2


def test_shared_header_batch_carries_the_header_once():
    each = P.tell_header("incr")
    head = P.parse_header(P.batch_header(3, each))
    assert head["kind"] == P.BATCH and head["n"] == 3 and P.parse_header(head["each"])["method"] == "incr"
    assert "each" not in P.parse_header(P.batch_header(3))


def test_plain_values_round_trip():
    codec = Codec()
    value = {"s": "x", "b": b"\x00", "l": [1, 2.5, None, True], "nested": {"k": [{}]}, 3: "int key"}
    body, bufs = codec.pack(value)
    assert bufs == [] and codec.unpack(body) == value


def test_tuples_and_sets_become_lists():
    codec = Codec()
    assert codec.unpack(codec.pack((1, 2))[0]) == [1, 2]
    assert sorted(codec.unpack(codec.pack({"a": {3, 1}})[0])["a"]) == [1, 3]


def test_numpy_inline_and_out_of_band():
    codec = Codec()
    small = np.arange(6, dtype=np.int16).reshape(2, 3)
    body, bufs = codec.pack([small])
    assert bufs == []
    out = codec.unpack(body)[0]
    assert out.dtype == np.int16 and out.shape == (2, 3) and (out == small).all()
    big = np.arange(100_000, dtype=np.float32)[::2]  # non-contiguous
    body, bufs = codec.pack({"x": big})
    assert len(bufs) == 1
    out = codec.unpack(body, [bytes(bufs[0])])["x"]
    assert (out == big).all()
    body, bufs = codec.pack({"x": big}, inline=True)
    assert bufs == [] and (codec.unpack(body)["x"] == big).all()


def test_received_buffers_are_freed_with_their_values_not_by_the_garbage_collector():
    """A tensor's frame must go as soon as the tensor does: a reference cycle in the decoder
    once kept every received buffer alive until the cyclic collector ran."""
    codec = Codec()
    body, bufs = codec.pack({"t": torch.ones(1 << 16), "a": np.ones(1 << 16)})
    frames = [np.frombuffer(bytes(b), dtype=np.uint8).copy() for b in bufs]  # writable, weakref-able
    alive = [weakref.ref(f) for f in frames]
    gc.disable()
    try:
        out = codec.unpack(body, frames)
        assert float(out["t"][-1]) == 1.0 and float(out["a"][-1]) == 1.0
        del out, frames
        assert [r() for r in alive] == [None, None]
    finally:
        gc.enable()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.int64, torch.bool, torch.float16])
def test_torch_tensors(dtype):
    codec = Codec()
    t = torch.arange(12).reshape(3, 4).to(dtype)
    body, bufs = codec.pack(t.t())  # transposed: not contiguous
    out = codec.unpack(body, [bytes(b) for b in bufs])
    assert out.dtype == dtype and torch.equal(out, t.t())
    assert codec.unpack(codec.pack(torch.empty(0, 3))[0]).shape == (0, 3)
    assert codec.unpack(codec.pack(torch.tensor(3.5))[0]).item() == 3.5


def test_scalars_and_refusals():
    codec = Codec()
    assert codec.unpack(codec.pack([np.float32(1.5), torch.tensor(2)])[0]) == [1.5, 2]
    with pytest.raises(TypeError, match="pickle is never used"):
        codec.pack(object())
    with pytest.raises(TypeError, match="without pickle"):
        codec.pack(np.array([object()]))


def test_large_arrays_travel_as_1_mib_frames_joined_writable_on_receipt():
    codec = Codec()
    arr = np.arange((3 << 20) // 4 + 5, dtype=np.float32)  # 3 MiB and a bit: four frames
    t = torch.arange(1 << 19, dtype=torch.float64)  # 4 MiB: four frames
    body, bufs = codec.pack({"a": arr, "t": t})
    assert [len(memoryview(b).cast("B")) for b in bufs] == [1 << 20] * 3 + [20] + [1 << 20] * 4
    out = codec.unpack(body, [bytes(b) for b in bufs])
    assert np.array_equal(out["a"], arr) and out["a"].flags.writeable
    assert torch.equal(out["t"], t)
    with pytest.raises(ProtocolError, match=r"buffers 4\.\.7 but the message has 5"):
        codec.unpack(body, [bytes(b) for b in bufs[:5]])


def test_refs_travel_as_ext_type():
    class Ref:
        def __init__(self, addr):
            self.addr = addr

        def __llmos_wire__(self):
            return EXT_REF, self.addr.to_wire()

    addr = ActorAddress("a1", "name", "ipc:///x/a/a1", "drop")
    codec = Codec({EXT_REF: lambda payload: Ref(ActorAddress.from_wire(payload))})
    out = codec.unpack(codec.pack({"r": Ref(addr)})[0])["r"]
    assert out.addr == addr
    with pytest.raises(ProtocolError, match="malformed actor address"):
        ActorAddress.from_wire(["only one"])


def test_malformed_bodies():
    codec = Codec()
    with pytest.raises(ProtocolError):
        codec.unpack(b"\xc1")
    with pytest.raises(ProtocolError, match="unknown extension type 99"):
        codec.unpack(msgpack.packb(msgpack.ExtType(99, b"")))
    bad = msgpack.packb(msgpack.ExtType(2, msgpack.packb(["<f4", [2], 5])))  # names buffer 5
    with pytest.raises(ProtocolError, match="names buffer 5"):
        codec.unpack(bad, [b"x"])
    with pytest.raises(ProtocolError, match="malformed ndarray"):
        codec.unpack(msgpack.packb(msgpack.ExtType(2, msgpack.packb(["not-a-dtype", [1], b"1234"]))))


def test_error_payload_round_trips():
    try:
        raise KeyError("k")
    except KeyError as exc:
        err = error_from_payload(error_payload(exc))
    assert isinstance(err, RemoteError) and err.remote_type == "KeyError" and "raise KeyError" in err.remote_traceback
    err = error_from_payload(error_payload(MethodNotFound("no m")))
    assert isinstance(err, MethodNotFound) and str(err) == "no m"
    died = error_from_payload(error_payload(ActorDiedError("gone", exitcode=3, reason="r", actor="a")))
    assert isinstance(died, ActorDiedError) and died.exitcode == 3 and died.reason == "r"
    nested = error_from_payload(error_payload(RemoteError("x.Y", "m", "tb")))
    assert nested.remote_type == "x.Y" and nested.remote_traceback == "tb"
    assert isinstance(error_from_payload("nonsense"), ProtocolError)
