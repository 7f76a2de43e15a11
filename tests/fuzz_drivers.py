"""Raw and mutated frames against every socket a client can reach (used by test_security_fuzz).

Each driver sends ``n`` inputs built from a seeded ``random.Random`` (a failure names its
seed, so it replays) and reads whatever comes back, without ever waiting on a reply: the
target must survive anything, answer what it can, and keep nothing of the rest.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import random
import socket
import struct
import sys

import msgpack
import zmq

from llmos_actors._wire import protocol as P
from llmos_actors._wire.topics import pub_header

METHODS = [
    "hello", "status", "ps", "lookup", "kill", "spawn", "watch", "logs", "audit", "goodbye",
    "actor_ready", "actor_failed", "actor_stopping", "heartbeat", "sync_acquire", "sync_release",
    "sync_cancel", "sync_list", "cond_wait", "cond_notify", "barrier_wait", "event_set", "event_wait",
    "pool_create", "pool_stop", "subscribe", "unsubscribe", "incr", "nope", "",
]  # fmt: skip
KINDS = ["call", "tell", "stream", "cancel", "credit", "batch", "ok", "pub", "", "x" * 40]


def value(rng: random.Random, depth: int = 0):
    """A random msgpack-able value (nested up to 3 deep)."""
    roll = rng.random()
    if depth < 3 and roll < 0.15:
        return [value(rng, depth + 1) for _ in range(rng.randint(0, 5))]
    if depth < 3 and roll < 0.3:
        return {rng.choice(["pid", "owner", "n", "cls", "name", "id", "v", str(rng.random())]): value(rng, depth + 1)
                for _ in range(rng.randint(0, 5))}  # fmt: skip
    return rng.choice(
        [
            None, True, False, 0, -1, 1, 2**31, -(2**63), 2**64 - 1, rng.random(), float("nan"), float("inf"),
            "", "a" * rng.randint(0, 300), "sys.actor.exited", "\xed\xb3\xbf",
            b"", rng.randbytes(rng.randint(0, 64)), rng.choice(METHODS),
        ]
    )  # fmt: skip


def header(rng: random.Random) -> dict:
    head = {"v": rng.choice([1, 1, 1, 0, 2, "1", None]), "kind": rng.choice(KINDS), "id": value(rng)}
    if rng.random() < 0.8:
        head["id"] = rng.randint(-5, 2**40)
    if rng.random() < 0.9:
        head["method"] = rng.choice(METHODS) if rng.random() < 0.8 else value(rng)
    for key in ("prio", "deadline", "n", "each", "pd", "dropped"):
        if rng.random() < 0.15:
            head[key] = value(rng)
    return head


def mutate(rng: random.Random, data: bytes) -> bytes:
    """Flip, drop, insert or truncate bytes of a valid frame."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.random()
        if not buf or op < 0.3:
            buf.insert(rng.randint(0, len(buf)), rng.randint(0, 255))
        elif op < 0.6:
            buf[rng.randrange(len(buf))] = rng.randint(0, 255)
        elif op < 0.8:
            del buf[rng.randrange(len(buf))]
        else:
            del buf[rng.randint(0, len(buf)) :]
    return bytes(buf)


def frames(rng: random.Random) -> list[bytes]:
    """One request-shaped message: valid-looking, mutated, or plain noise."""
    roll = rng.random()
    head = msgpack.packb(header(rng))
    body = msgpack.packb([[value(rng) for _ in range(rng.randint(0, 3))], {} if rng.random() < 0.8 else value(rng)])
    if roll < 0.4:
        return [head, body]
    if roll < 0.7:
        return [mutate(rng, head), mutate(rng, body)]
    if roll < 0.8:  # a batch of random items
        items = [[header(rng), [[value(rng)], {}]] for _ in range(rng.randint(0, 5))]
        return [P.batch_header(len(items)), msgpack.packb(items)]
    return [rng.randbytes(rng.randint(0, 64)) for _ in range(rng.randint(0, 5))]


def _drain(sock: zmq.Socket) -> int:
    got = 0
    while sock.poll(0):
        sock.recv_multipart()
        got += 1
    return got


def router(endpoint: str, n: int, seed: int, curve: dict | None = None) -> None:
    """Request-shaped noise at a ROUTER (the control socket, an actor's socket)."""
    rng = random.Random(seed)
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    for key, val in (curve or {}).items():
        sock.setsockopt(getattr(zmq, key), val)
    sock.connect(endpoint)
    try:
        for i in range(n):
            parts = frames(rng)
            if parts:
                sock.send_multipart(parts)
            if i % 64 == 0:
                _drain(sock)
        _drain(sock)
    finally:
        sock.close(0)


def subscriber(endpoint: str, n: int, seed: int) -> None:
    """Subscription control noise at the daemon's events ROUTER (``[b"", header, body]``)."""
    rng = random.Random(seed)
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    try:
        for i in range(n):
            parts = frames(rng)
            if rng.random() < 0.7:
                body = [[value(rng) if rng.random() < 0.3 else "f" + str(rng.random()) for _ in range(2)], "fuzz"]
                parts = [msgpack.packb(header(rng) | {"method": rng.choice(["subscribe", "unsubscribe", "x"])}),
                         msgpack.packb(body)]  # fmt: skip
            sock.send_multipart([b"" if rng.random() < 0.9 else rng.randbytes(3), *parts])
            if i % 64 == 0:
                _drain(sock)
        # Leave nothing subscribed: unsubscribe everything this socket may hold.
        sock.send_multipart([b"", P.request_header(P.CALL, 1, "unsubscribe"), msgpack.packb([[], "fuzz"])])
        sock.poll(1000)
        _drain(sock)
    finally:
        sock.close(0)


def publisher(endpoint: str, n: int, seed: int) -> None:
    """Topic-batch noise at the daemon's publish inbox (``[topic, header, body]``)."""
    rng = random.Random(seed)
    sock = zmq.Context.instance().socket(zmq.PUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    try:
        for _ in range(n):
            topic = rng.choice([b"fuzz.x", b"sys.actor.exited", b"sys.audit", b"\xff\xfe", b"", rng.randbytes(8)])
            if rng.random() < 0.01:
                topic = b"t" * rng.randint(1000, 300_000)
            count = rng.choice([1, 0, -1, 2**40, "1"])
            body = msgpack.packb([value(rng) for _ in range(max(0, min(3, count if type(count) is int else 0)))])
            head = pub_header(1) if rng.random() < 0.3 else msgpack.packb({"v": 1, "kind": "pub", "id": 0, "n": count})
            parts = [topic, head, body]
            if rng.random() < 0.4:
                parts = [mutate(rng, p) for p in parts][: rng.randint(0, 4)]
            if parts:
                sock.send_multipart(parts)
    finally:
        sock.close(0)


def pages(path: str, n: int, seed: int) -> None:
    """Noise on the pages channel and in this process's note ring (run in a child process: one channel per pid)."""
    from llmos_actors._pages import channel as C
    from llmos_actors._pages.ring import Ring

    rng = random.Random(seed)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5)
    sock.connect(path)
    sock.sendall(C.frame(C.HELLO, {"pid": os.getpid()}))
    _data, fds, _flags, _addr = socket.recv_fds(sock, 1 << 16, 4)
    ring = mmap.mmap(fds[1], Ring.size()) if len(fds) > 1 else None
    for fd in fds:
        os.close(fd)
    sock.setblocking(False)
    ops = [C.ALLOC, C.SEND, C.TAKE, C.RELEASE, C.PUT, C.GET, C.FREE, C.DRAIN, C.HELLO, "x"]
    try:
        for _i in range(n):
            roll = rng.random()
            if roll < 0.5:
                payload = C.frame(rng.choice(ops), *[value(rng) for _ in range(rng.randint(0, 5))])
            elif roll < 0.8:
                payload = mutate(rng, C.frame(rng.choice(ops), rng.randint(0, 2**20), 0, []))
            elif roll < 0.9 and ring is not None:  # scribble over the note ring, then ask for a drain
                off = rng.randrange(len(ring) - 16)
                ring[off : off + 16] = rng.randbytes(16)
                payload = C.frame(C.DRAIN)
            else:
                size = rng.choice([0, 1, 2**20 + 1, 2**32 - 1])
                payload = struct.pack("<I", size) + rng.randbytes(rng.randint(0, 32))
            try:
                sock.sendall(payload)
                while sock.recv(1 << 16):
                    pass
                raise ConnectionResetError  # end of stream: the daemon hung up
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:  # the daemon hung up on garbage: start over
                sock.close()
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.connect(path)
                sock.setblocking(False)
    finally:
        sock.close()
        if ring is not None:
            ring.close()


def tcp_handshake(host: str, port: int, n: int, seed: int, per_connection: int = 20) -> None:
    """``n`` raw frames at a CurveZMQ port, ``per_connection`` per connection: greetings cut short,
    mutated, or noise, before any key is checked (connections reset, so no TIME_WAIT piles up)."""
    rng = random.Random(seed)
    greeting = b"\xff" + b"\0" * 8 + b"\x7f" + b"\x03\x00" + b"CURVE".ljust(20, b"\0") + b"\0" + b"\0" * 31
    linger = struct.pack("ii", 1, 0)
    for _ in range(max(1, n // per_connection)):
        with socket.create_connection((host, port), timeout=2) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            s.settimeout(0.01)
            try:
                for _ in range(per_connection):
                    data = greeting if rng.random() < 0.5 else rng.randbytes(rng.randint(1, 200))
                    s.sendall(mutate(rng, data) if rng.random() < 0.7 else data)
                with contextlib.suppress(TimeoutError):
                    s.recv(256)
            except OSError:
                pass


if __name__ == "__main__":
    driver, args = sys.argv[1], sys.argv[2:]
    if driver == "pages":
        pages(args[0], int(args[1]), int(args[2]))
