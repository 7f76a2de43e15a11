"""Raw pyzmq peers: the same messages over the socket pattern a user would pick by hand."""

from __future__ import annotations

import contextlib
import struct
import time
from collections.abc import Callable

import msgpack
import zmq

from . import peer_servers as srv
from .context import BenchContext
from .ours import ASYNC_WINDOW, SYNC_ROUND, TELL_ROUND, tensor_round
from .payload import PAYLOAD_BYTES, reqrep_round, request_bytes
from .peer_procs import MP, REPLY_TIMEOUT, START_TIMEOUT, recv_reply, stop_proc, tensor_source, unique_addr
from .workload import Workload


class ZmqClient(Workload):
    """A child process serving ``target(addr, ...)`` and one socket of ours connected to it."""

    def __init__(self, ctx: BenchContext, stem: str, kind: int, target: Callable[..., None]) -> None:
        self.addr = unique_addr(ctx, stem)
        self.zctx = zmq.Context()
        self.sock = self.zctx.socket(kind)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.RCVTIMEO, int(REPLY_TIMEOUT * 1000))
        self.proc = MP.Process(target=target, args=(self.addr,), daemon=True)
        self.proc.start()
        self.sock.connect(self.addr)

    def close(self) -> None:
        try:
            with contextlib.suppress(zmq.ZMQError):
                self.sock.send(srv.STOP, zmq.NOBLOCK)
                self.sock.recv()
        finally:
            self.sock.close(linger=0)
            self.zctx.term()
            stop_proc(self.proc)


class ZmqReqRep(ZmqClient):
    """zmq REQ/REP over ipc, one request in flight."""

    ops = SYNC_ROUND
    note = f"REQ/REP ipc, {PAYLOAD_BYTES} B msgpack, both sides pack/unpack"

    def __init__(self, ctx: BenchContext) -> None:
        super().__init__(ctx, "rep", zmq.REQ, srv.rep_server)
        self.seq = 0

    def round(self) -> None:
        self.seq = reqrep_round(self.sock.send, self.sock.recv, self.seq, SYNC_ROUND)


class ZmqDealerRouter(Workload):
    """zmq DEALER -> ROUTER echo servers: rounds of ``ASYNC_WINDOW`` requests sent, then all replies read.

    With ``n_servers`` > 1 the DEALER spreads requests round-robin over them (1:n).
    """

    ops = ASYNC_WINDOW

    def __init__(self, ctx: BenchContext, n_servers: int = 1) -> None:
        self.note = f"DEALER -> {n_servers} ROUTER(s) ipc, {ASYNC_WINDOW} sent then {ASYNC_WINDOW} read"
        self.zctx = zmq.Context()
        self.sock = self.zctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.SNDHWM, srv.PIPELINE_HWM)
        self.sock.setsockopt(zmq.RCVHWM, srv.PIPELINE_HWM)
        self.sock.setsockopt(zmq.RCVTIMEO, int(REPLY_TIMEOUT * 1000))
        self.procs = []
        for _ in range(n_servers):
            addr = unique_addr(ctx, "router")
            proc = MP.Process(target=srv.router_server, args=(addr,), daemon=True)
            proc.start()
            self.procs.append(proc)
            self.sock.connect(addr)
        self.raw = request_bytes(0)

    def round(self) -> None:
        send, recv, raw = self.sock.send, self.sock.recv, self.raw
        for _ in range(ASYNC_WINDOW):
            send(raw)
        unpackb = msgpack.unpackb
        for _ in range(ASYNC_WINDOW):
            unpackb(recv())

    def close(self) -> None:
        try:
            with contextlib.suppress(zmq.ZMQError):
                for _ in self.procs:
                    self.sock.send(srv.STOP, zmq.NOBLOCK)
                for _ in self.procs:
                    self.sock.recv()
        finally:
            self.sock.close(linger=0)
            self.zctx.term()
            for proc in self.procs:
                stop_proc(proc)


class ZmqPushPull(Workload):
    """zmq PUSH -> PULL one-way messages, packed by the sender and unpacked by the receiver."""

    ops = TELL_ROUND
    note = f"PUSH/PULL ipc, {TELL_ROUND} msgs + an end marker; {PAYLOAD_BYTES} B msgpack packed and unpacked"

    def __init__(self, ctx: BenchContext) -> None:
        addr = unique_addr(ctx, "pull")
        self.conn, child = MP.Pipe()
        self.proc = MP.Process(target=srv.pull_sink, args=(addr, child), daemon=True)
        self.proc.start()
        child.close()
        self.zctx = zmq.Context()
        self.sock = self.zctx.socket(zmq.PUSH)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.SNDHWM, srv.PIPELINE_HWM)
        try:
            srv.wait_ready(self.conn, START_TIMEOUT, "the PULL sink")
        except BaseException:
            self.close()
            raise
        self.sock.connect(addr)
        self.seq = 0

    def round(self) -> None:
        send, seq = self.sock.send, self.seq
        for _ in range(TELL_ROUND):
            seq += 1
            send(request_bytes(seq))
        self.seq = seq
        send(b"END")
        got = recv_reply(self.conn, "the PULL sink")
        if got != TELL_ROUND:
            raise RuntimeError(f"the sink counted {got} of {TELL_ROUND} messages")

    def close(self) -> None:
        try:
            with contextlib.suppress(zmq.ZMQError):
                self.sock.send(srv.STOP)
        finally:
            self.sock.close(linger=1000)  # let STOP leave
            self.zctx.term()
            self.conn.close()
            stop_proc(self.proc)


class ZmqPubSub(Workload):
    """zmq PUB -> ``n`` SUB processes; the rate each subscriber receives (all must get all)."""

    def __init__(self, ctx: BenchContext, n: int = 4, per_round: int = 5000, decode: bool = False) -> None:
        self.ops = self.per_round = per_round
        self.n = n
        what = "each unpacks (msgpack)" if decode else "raw bytes, each only counts"
        self.note = f"PUB/SUB ipc 1 -> {n} processes, HWM unlimited, {what}; rate each receives"
        pub_addr, ctl_addr = unique_addr(ctx, "pub"), unique_addr(ctx, "ctl")
        self.zctx = zmq.Context()
        self.pub = self.zctx.socket(zmq.PUB)
        self.pub.setsockopt(zmq.SNDHWM, 0)  # unlimited: nothing dropped silently
        self.pub.setsockopt(zmq.LINGER, 0)
        self.pub.bind(pub_addr)
        self.ctl = self.zctx.socket(zmq.PULL)
        self.ctl.setsockopt(zmq.LINGER, 0)
        self.ctl.setsockopt(zmq.RCVTIMEO, int(REPLY_TIMEOUT * 1000))
        self.ctl.bind(ctl_addr)
        self.procs = [
            MP.Process(target=srv.subscriber, args=(pub_addr, ctl_addr, decode), daemon=True) for _ in range(n)
        ]
        for proc in self.procs:
            proc.start()
        try:
            self._wait_joined()
        except BaseException:
            self.close()
            raise
        self.raw = request_bytes(1)

    def _wait_joined(self) -> None:
        """Publish HELLO until every subscriber has seen one (SUB joins late: the "slow joiner")."""

        joined = 0
        deadline = time.monotonic() + START_TIMEOUT
        while joined < self.n:
            if time.monotonic() > deadline:
                raise TimeoutError("the subscribers did not join")
            self.pub.send(b"HELLO")
            if self.ctl.poll(10):
                self.ctl.recv()
                joined += 1

    def round(self) -> None:
        send, raw = self.pub.send, self.raw
        for _ in range(self.per_round):
            send(raw)
        send(b"END")
        counts = [msgpack.unpackb(self.ctl.recv()) for _ in range(self.n)]
        if min(counts) != self.per_round:
            raise RuntimeError(f"subscribers received {counts} of {self.per_round}")

    def close(self) -> None:
        try:
            with contextlib.suppress(zmq.ZMQError):
                self.pub.send(srv.STOP)
                self.pub.send(srv.STOP)  # a late joiner may miss one
        finally:
            for proc in self.procs:
                stop_proc(proc, 5)
            self.pub.close(linger=0)
            self.ctl.close(linger=0)
            self.zctx.term()


# ---------------------------------------------------------------------------- process start


class ZmqTensor(ZmqClient):
    """zmq REQ/REP: the tensor's buffer sent with ``copy=False``, read in place by the receiver."""

    note = "REQ/REP ipc, send(copy=False), receiver maps the frame (no copy)"

    def __init__(self, ctx: BenchContext, mib: int) -> None:
        self.ops = self.per_round = tensor_round(ctx, mib)
        self.t = tensor_source(mib)
        super().__init__(ctx, "tensor", zmq.REQ, srv.tensor_rep_server)

    def round(self) -> None:
        t, sock = self.t, self.sock
        view = memoryview(t.numpy())
        for i in range(self.per_round):
            t[-1] = i
            sock.send(view, copy=False)
            if struct.unpack("d", sock.recv())[0] != i:
                raise RuntimeError("stale tensor")
