"""Bad input stays harmless: clear error replies, or counted drops; daemon and actors keep serving."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest
import zmq

import llmos_actors as llmos
from llmos_actors.testing import start_daemon, wait_for

from actors import Counter, Probe


@pytest.fixture
def raw(kernel):
    """A raw DEALER socket, to send frames no well-behaved client would."""
    ctx = zmq.Context()
    socks = []

    def connect(endpoint: str) -> zmq.Socket:
        s = ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.RCVTIMEO, 5000)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(endpoint)
        socks.append(s)
        return s

    yield connect
    for s in socks:
        s.close()
    ctx.term()


def _reply(sock) -> tuple[dict, object]:
    head, body = sock.recv_multipart()[:2]
    return msgpack.unpackb(head), msgpack.unpackb(body, strict_map_key=False)


def _header(**fields) -> bytes:
    base = {"v": 1, "kind": "call", "id": 1, "method": "get", "prio": None, "deadline": None}
    base.update(fields)
    return msgpack.packb(base)


def test_garbage_frames_are_counted_not_fatal(kernel, raw):
    c = kernel.spawn(Counter, 5)
    s = raw(c.address.endpoint)
    s.send(b"\xc1\xc1 not msgpack")  # header only, invalid
    s.send_multipart([msgpack.packb([1, 2, 3]), b""])  # header not a map
    s.send_multipart([msgpack.packb({"no": "id"}), b""])
    s.send_multipart([b"", b"", b"", b""])
    assert c.call("get") == 5
    wait_for(lambda: next(r for r in kernel.ps() if r["id"] == c.id)["stats"].get("malformed", 0) >= 4, 10)


def test_shared_header_batches_run_in_order_and_bad_ones_are_counted(kernel, raw):
    c = kernel.spawn(Counter)
    s = raw(c.address.endpoint)
    each = msgpack.packb({"v": 1, "kind": "tell", "id": 0, "method": "incr", "prio": None, "deadline": None})
    bodies = [msgpack.packb([[k], {}]) for k in (1, 2, 3)]
    s.send_multipart(
        [msgpack.packb({"v": 1, "kind": "batch", "id": 0, "n": 3, "each": each}), b"\x93" + b"".join(bodies)]
    )
    wait_for(lambda: c.call("get") == 6, 10)  # all three ran (this raw socket is another sender)
    # A shared header that is not packed bytes, or not a header: counted, nothing run.
    s.send_multipart([msgpack.packb({"v": 1, "kind": "batch", "id": 0, "n": 1, "each": 5}), b"\x91" + bodies[0]])
    s.send_multipart([msgpack.packb({"v": 1, "kind": "batch", "id": 0, "n": 1, "each": b"\xc1"}), b"\x91" + bodies[0]])
    # Kinds off the fast path take the checked road: a shared call header still gets its reply.
    call = msgpack.packb({"v": 1, "kind": "call", "id": 9, "method": "incr", "prio": None, "deadline": None})
    s.send_multipart([msgpack.packb({"v": 1, "kind": "batch", "id": 0, "n": 1, "each": call}), b"\x91" + bodies[2]])
    head, body = _reply(s)  # the bad batches before it were skipped: nothing else ran
    assert head["kind"] == "ok" and head["id"] == 9 and body == 9
    wait_for(lambda: next(r for r in kernel.ps() if r["id"] == c.id)["stats"].get("malformed", 0) >= 2, 10)


def test_wrong_protocol_version_gets_error_reply(kernel, raw):
    c = kernel.spawn(Counter)
    s = raw(c.address.endpoint)
    s.send_multipart([_header(v=99, id=7), msgpack.packb([[], {}])])
    head, body = _reply(s)
    assert head["kind"] == "err" and head["id"] == 7
    assert body["code"] == "protocol" and "unsupported protocol version 99" in body["message"]


@pytest.mark.parametrize(
    "body, message",
    [
        (b"\xc1", "malformed message body"),
        (msgpack.packb({"not": "a list"}), "[args, kwargs]"),
        (msgpack.packb([[1], "kwargs?"]), "kwargs"),
        (msgpack.packb([[], {1: 2}]), "keyword argument names"),
    ],
)
def test_malformed_body_gets_error_reply(kernel, raw, body, message):
    c = kernel.spawn(Counter)
    s = raw(c.address.endpoint)
    s.send_multipart([_header(id=3), body])
    head, reply = _reply(s)
    assert head["kind"] == "err" and reply["code"] == "protocol"
    assert message in reply["message"]
    assert c.call("incr") == 1


def test_unknown_kind_and_missing_method(kernel, raw):
    c = kernel.spawn(Counter)
    s = raw(c.address.endpoint)
    s.send_multipart([_header(kind="launch", id=4), msgpack.packb([[], {}])])
    assert "unknown request kind" in _reply(s)[1]["message"]
    s.send_multipart([_header(method=None, id=5), msgpack.packb([[], {}])])
    assert "method" in _reply(s)[1]["message"]


def test_unknown_method_and_wrong_arguments(kernel):
    p = kernel.spawn(Probe)
    with pytest.raises(llmos.MethodNotFound, match="no public method 'nope'"):
        p.call("nope")
    with pytest.raises(llmos.RemoteError) as info:
        p.call("two_args", 1)
    assert info.value.remote_type == "TypeError"
    assert "missing 1 required positional argument" in info.value.remote_message
    with pytest.raises(llmos.RemoteError, match="TypeError"):
        p.call("two_args", 1, 2, 3)
    assert p.call("two_args", 1, 2) == 3


def test_tell_to_unknown_method_is_logged_not_fatal(kernel):
    p = kernel.spawn(Probe, name="tell-bad")
    p.tell("nope")
    assert p.call("two_args", 2, 2) == 4
    wait_for(lambda: any("nope" in line for line in kernel.logs("tell-bad")["lines"]), 10)


def test_daemon_rejects_bad_control_requests(kernel, raw, daemon):
    s = raw(f"ipc://{daemon.runtime_dir}/control")
    s.send_multipart([_header(method="spawn", id=9), msgpack.packb([["not a map"], {}])])
    assert "spawn takes one map" in _reply(s)[1]["message"]
    s.send_multipart([_header(method="spawn", id=10), msgpack.packb([[{"cls": "no colon"}], {}])])
    assert "module:Class" in _reply(s)[1]["message"]
    s.send_multipart([_header(method="reboot", id=11), msgpack.packb([[], {}])])
    assert _reply(s)[1]["code"] == "method_not_found"
    s.send_multipart([_header(method="kill", id=12), msgpack.packb([[12345], {}])])
    assert "must be a non-empty string" in _reply(s)[1]["message"]
    s.send(b"garbage")
    with pytest.raises(llmos.ActorNotFound):
        kernel.kill("no-such-actor")
    assert kernel.status()["pid"] == daemon.pid  # still serving


def test_oversized_messages():
    # Without the page pool (with it, large arrays travel as page handles and never hit the limit).
    with start_daemon(max_message_bytes=1024 * 1024, pages={"enabled": False}) as d:
        kernel = d.connect()
        c = kernel.spawn(Counter)
        big = np.zeros(2 * 1024 * 1024, dtype=np.uint8)
        with pytest.raises(llmos.ProtocolError, match="exceeds max_message_bytes"):
            c.call("echo", big)  # refused before it leaves
        ctx = zmq.Context()
        s = ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.RCVTIMEO, 5000)
        s.connect(c.address.endpoint)
        s.send_multipart([_header(id=1), b"\x00" * (2 * 1024 * 1024)])
        _, body = _reply(s)
        assert body["code"] == "protocol" and "exceeds this actor's limit" in body["message"]
        s.close(0)
        ctx.term()
        assert c.call("incr") == 1
