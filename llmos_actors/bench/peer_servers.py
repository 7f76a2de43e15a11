"""What runs in the peers' child processes: echo servers, sinks, subscribers, fork helpers.

These are the other end of the workloads in ``peers``. They start in fresh
interpreters (multiprocessing's ``spawn`` context: no inherited threads or
ZeroMQ context) and import only light modules here, so that torch is loaded
exactly where a case says it is. Each loops until its parent sends a stop
message, then closes its sockets and returns.
"""

from __future__ import annotations

import os
import struct
import time
from typing import Any

import msgpack

from .payload import handle_packed

#: Stop marker on every peer socket (no valid request is empty).
STOP = b""

#: Bound on the zmq queues of pipelined peers (a round never has more in flight).
PIPELINE_HWM = 100_000


def pipe_server(conn: Any) -> None:
    """multiprocessing.Pipe echo: one request in, one reply out."""
    while True:
        raw = conn.recv_bytes()
        if raw == STOP:
            return
        conn.send_bytes(handle_packed(raw))


def rep_server(addr: str) -> None:
    """zmq REP echo (one request at a time)."""
    import zmq

    ctx = zmq.Context()
    sock = ctx.socket(zmq.REP)
    sock.bind(addr)
    try:
        while True:
            raw = sock.recv()
            if raw == STOP:
                sock.send(STOP)
                return
            sock.send(handle_packed(raw))
    finally:
        sock.close(linger=0)
        ctx.term()


def router_server(addr: str) -> None:
    """zmq ROUTER echo: answers every request of every DEALER, as fast as they come."""
    import zmq

    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.ROUTER_MANDATORY, 1)  # block rather than drop at the high-water mark
    sock.setsockopt(zmq.SNDHWM, PIPELINE_HWM)
    sock.setsockopt(zmq.RCVHWM, PIPELINE_HWM)
    sock.bind(addr)
    try:
        while True:
            ident, raw = sock.recv_multipart()
            if raw == STOP:
                sock.send_multipart([ident, STOP])
                return
            sock.send_multipart([ident, handle_packed(raw)])
    finally:
        sock.close(linger=0)
        ctx.term()


def pull_sink(addr: str, conn: Any) -> None:
    """zmq PULL end of one-way messages: unpacks and touches each; on ``b"END"`` reports the count."""
    import zmq

    ctx = zmq.Context()
    sock = ctx.socket(zmq.PULL)
    sock.setsockopt(zmq.RCVHWM, PIPELINE_HWM)
    sock.bind(addr)
    conn.send_bytes(b"ready")
    n = 0
    unpackb = msgpack.unpackb
    try:
        while True:
            raw = sock.recv()
            if raw == b"END":
                conn.send(n)
                n = 0
            elif raw == STOP:
                return
            else:
                unpackb(raw)["op"] = "ret"
                n += 1
    finally:
        sock.close(linger=0)
        ctx.term()


def subscriber(pub_addr: str, ctl_addr: str, decode: bool = False) -> None:
    """zmq SUB end of the fan-out: says it joined, then reports its count at each ``b"END"``.

    Raw (the default) only counts, like the reference peer script; ``decode`` also
    unpacks each message, the work a subscriber actor does before its method runs.
    """
    import zmq

    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 0)  # unlimited: measure delivery, not drops
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(pub_addr)
    ctl = ctx.socket(zmq.PUSH)
    ctl.connect(ctl_addr)
    joined = False
    n = 0
    unpackb = msgpack.unpackb
    try:
        while True:
            raw = sub.recv()
            if raw == b"HELLO":
                if not joined:
                    ctl.send(b"joined")
                    joined = True
            elif raw == b"END":
                ctl.send(msgpack.packb(n))
                n = 0
            elif raw == STOP:
                return
            else:
                if decode:
                    unpackb(raw)
                n += 1
    finally:
        sub.close(linger=0)
        ctl.close(linger=0)
        ctx.term()


# ---------------------------------------------------------------------------- process start


def _child_reply(w: int, import_torch: bool) -> None:
    if import_torch:
        import torch

        torch.zeros(4).add_(1)
    os.write(w, b"k")


def fork_helper(conn: Any, preload_torch: bool, child_imports_torch: bool) -> None:
    """Starts one child per request and replies once the child has written its first byte.

    ``preload_torch``: this helper imports torch first and forks with ``os.fork``
    (a bare fork server, the floor for any zygote). Otherwise it starts each child
    with ``multiprocessing``'s fork context from a torch-free parent, as a user of
    multiprocessing would, and the child imports torch itself if told to.
    """
    import multiprocessing as mp

    if preload_torch:
        import torch

        torch.zeros(4).add_(1)
    fork_ctx = mp.get_context("fork")
    children: list[Any] = []
    conn.send_bytes(b"ready")
    while conn.recv_bytes() == b"start":
        r, w = os.pipe()
        if preload_torch:
            pid = os.fork()
            if pid == 0:  # the child: prove torch works, say so, leave without cleanup
                try:
                    os.close(r)
                    _child_reply(w, True)
                finally:
                    os._exit(0)
            os.close(w)
            children.append(pid)
        else:
            proc = fork_ctx.Process(target=_child_reply, args=(w, child_imports_torch))
            proc.start()
            os.close(w)
            children.append(proc)
        ok = os.read(r, 1) == b"k"
        os.close(r)
        conn.send_bytes(b"ok" if ok else b"failed")
    for child in children:
        if isinstance(child, int):
            os.waitpid(child, 0)
        else:
            child.join(10)


# ---------------------------------------------------------------------------- tensors


def tensor_rep_server(addr: str) -> None:
    """zmq REP: maps a float32 tensor's bytes without a copy, replies with its last element.

    numpy rather than torch reads it: the same zero-copy view, and this child starts
    without paying for ``import torch``.
    """
    import numpy as np
    import zmq

    ctx = zmq.Context()
    sock = ctx.socket(zmq.REP)
    sock.bind(addr)
    try:
        while True:
            frame = sock.recv(copy=False)
            if len(frame) == 0:
                sock.send(STOP)
                return
            x = np.frombuffer(frame.buffer, dtype=np.float32)
            value = float(x[-1])
            del x, frame
            sock.send(struct.pack("d", value))
    finally:
        sock.close(linger=0)
        ctx.term()


def torch_queue_reader(queue: Any, conn: Any) -> None:
    """torch.multiprocessing.Queue consumer: reads each tensor's last element and replies."""
    while True:
        t = queue.get()
        if t is None:
            return
        conn.send(float(t[-1]))
        del t


def shm_fresh_reader(conn: Any) -> None:
    """Maps each new /dev/shm segment it is told of, reads its last float32, unmaps it."""
    import mmap

    import numpy as np

    while True:
        msg = conn.recv()
        if msg is None:
            return
        path, numel = msg
        fd = os.open(path, os.O_RDONLY)
        try:
            segment = mmap.mmap(fd, numel * 4, prot=mmap.PROT_READ)
        finally:
            os.close(fd)
        arr = np.frombuffer(segment, dtype=np.float32, count=numel)
        value = float(arr[-1])
        del arr
        segment.close()
        conn.send(value)


def shm_reader(conn: Any) -> None:
    """Maps a /dev/shm file once (by path), then reads its last float32 per request.

    Plain ``mmap`` rather than ``multiprocessing.shared_memory``: its resource
    tracker would claim the segment in this process too and warn or unlink it at exit.
    """
    import mmap

    import numpy as np

    maps: dict[str, mmap.mmap] = {}
    try:
        while True:
            msg = conn.recv()
            if msg is None:
                return
            path, numel = msg
            if path not in maps:
                fd = os.open(path, os.O_RDONLY)
                try:
                    maps[path] = mmap.mmap(fd, numel * 4, prot=mmap.PROT_READ)
                finally:
                    os.close(fd)
            arr = np.frombuffer(maps[path], dtype=np.float32, count=numel)
            conn.send(float(arr[-1]))
            del arr
    finally:
        for m in maps.values():
            m.close()


def wait_ready(conn: Any, timeout: float, what: str) -> None:
    """The child's first message, within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not conn.poll(max(0.0, deadline - time.monotonic())):
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what} did not start within {timeout} s")
    conn.recv_bytes()
