"""The message every call case sends, so that a ratio compares equal work.

It is the ~97-byte msgpack map the peer scripts in ``shared/peers`` use. Per call
the caller packs it, the callee unpacks it, changes one field, packs it back, and
the caller unpacks the reply: the work any msgpack-based RPC does. llmos does the
packing in its codec; the peers do it by hand with ``msgpack``.

Standard library and msgpack only: the Ray driver script runs in another
interpreter and receives the payload on its command line.
"""

from __future__ import annotations

from typing import Any

import msgpack

#: A call's argument: 5 fields, nested list and map.
PAYLOAD: dict[str, Any] = {
    "op": "call",
    "actor": "worker-0042",
    "seq": 0,
    "args": [1, 2.5, "hello"],
    "meta": {"deadline": 30.0, "trace": "abcdef012345"},
}

#: Its size packed (97 bytes).
PAYLOAD_BYTES = len(msgpack.packb(PAYLOAD))


def payload(seq: int = 0) -> dict[str, Any]:
    """A fresh copy of the payload with its sequence number set."""
    return {**PAYLOAD, "seq": seq}


def touch(d: dict[str, Any]) -> dict[str, Any]:
    """The callee's work on a decoded request: change one field (the reply is the same map)."""
    d["op"] = "ret"
    return d


def handle_packed(raw: bytes) -> bytes:
    """The callee's work for peers that move bytes: unpack, touch, pack."""
    return msgpack.packb(touch(msgpack.unpackb(raw)))


def request_bytes(seq: int) -> bytes:
    """A packed request with sequence number ``seq`` (what a peer caller sends)."""
    return msgpack.packb({**PAYLOAD, "seq": seq})


def reqrep_round(send: Any, recv: Any, seq: int, n: int) -> int:
    """``n`` request/reply exchanges of packed requests over a REQ-like socket; returns the last seq."""
    for _ in range(n):
        seq += 1
        send(request_bytes(seq))
        if msgpack.unpackb(recv())["seq"] != seq:
            raise RuntimeError("reply out of order")
    return seq
