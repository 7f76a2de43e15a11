"""The peers: the same work as each case, done with what a user would pick instead.

raw pyzmq (always there: it is our own dependency), multiprocessing,
torch.multiprocessing (if torch is installed) and Ray (if it is installed, here
or for ``--ray-python``). Each peer is a ``Workload`` like ours; its servers run
in child processes started with the ``spawn`` method (see ``peer_servers``) and
stopped, then joined (killed if they do not stop), in ``close``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import multiprocessing
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack
import zmq

from . import metrics_cases
from . import peer_servers as srv
from .context import BenchContext
from .ours import ASYNC_WINDOW, MIB, SYNC_ROUND, TELL_ROUND, nn_calls, tensor_round
from .payload import PAYLOAD_BYTES, reqrep_round, request_bytes
from .workload import Workload

MP = multiprocessing.get_context("spawn")  # children start clean: no threads, no zmq context
#: Seconds a peer's child may take to start (the ones that import torch take ~1 s).
START_TIMEOUT = 120.0
#: Seconds to wait for any single reply from a peer's child.
REPLY_TIMEOUT = 60.0

_names = itertools.count()


def _unique(ctx: BenchContext, stem: str) -> str:
    return ctx.ipc(f"{stem}-{next(_names)}")


def _stop(proc: Any, timeout: float = 10.0) -> None:
    """Wait for our child to exit; kill it (by its own pid) if it does not."""
    proc.join(timeout)
    if proc.is_alive():
        proc.kill()
        proc.join(timeout)


def _stop_reader(conn: Any, proc: Any) -> None:
    """Tell a child reading ``conn`` to finish (``None``), wait for it, close our end."""
    try:
        with contextlib.suppress(OSError):
            conn.send(None)
        _stop(proc)
    finally:
        conn.close()


def _recv(conn: Any, what: str) -> Any:
    if not conn.poll(REPLY_TIMEOUT):
        raise TimeoutError(f"{what} gave no reply within {REPLY_TIMEOUT:.0f} s")
    return conn.recv()


class _ZmqClient(Workload):
    """A child process serving ``target(addr, ...)`` and one socket of ours connected to it."""

    def __init__(self, ctx: BenchContext, stem: str, kind: int, target: Callable[..., None]) -> None:
        self.addr = _unique(ctx, stem)
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
            _stop(self.proc)


# ---------------------------------------------------------------------------- calls


class ZmqReqRep(_ZmqClient):
    """zmq REQ/REP over ipc, one request in flight."""

    ops = SYNC_ROUND
    note = f"REQ/REP ipc, {PAYLOAD_BYTES} B msgpack, both sides pack/unpack"

    def __init__(self, ctx: BenchContext) -> None:
        super().__init__(ctx, "rep", zmq.REQ, srv.rep_server)
        self.seq = 0

    def round(self) -> None:
        self.seq = reqrep_round(self.sock.send, self.sock.recv, self.seq, SYNC_ROUND)


class MpPipe(Workload):
    """multiprocessing.Pipe, one request in flight."""

    ops = SYNC_ROUND
    note = f"Pipe send_bytes/recv_bytes, {PAYLOAD_BYTES} B msgpack"

    def __init__(self, ctx: BenchContext) -> None:
        self.conn, child = MP.Pipe()
        self.proc = MP.Process(target=srv.pipe_server, args=(child,), daemon=True)
        self.proc.start()
        child.close()
        self.seq = 0

    def round(self) -> None:
        conn, seq = self.conn, self.seq
        for _ in range(SYNC_ROUND):
            seq += 1
            conn.send_bytes(request_bytes(seq))
            if not conn.poll(REPLY_TIMEOUT):
                raise TimeoutError("the Pipe server stopped answering")
            if msgpack.unpackb(conn.recv_bytes())["seq"] != seq:
                raise RuntimeError("reply out of order")
        self.seq = seq

    def close(self) -> None:
        try:
            with contextlib.suppress(OSError):
                self.conn.send_bytes(srv.STOP)
        finally:
            self.conn.close()
            _stop(self.proc)


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
            addr = _unique(ctx, "router")
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
                _stop(proc)


class ZmqPushPull(Workload):
    """zmq PUSH -> PULL one-way messages, packed by the sender and unpacked by the receiver."""

    ops = TELL_ROUND
    note = f"PUSH/PULL ipc, {TELL_ROUND} msgs + an end marker; {PAYLOAD_BYTES} B msgpack packed and unpacked"

    def __init__(self, ctx: BenchContext) -> None:
        addr = _unique(ctx, "pull")
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
        got = _recv(self.conn, "the PULL sink")
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
            _stop(self.proc)


class ZmqPubSub(Workload):
    """zmq PUB -> ``n`` SUB processes; the rate each subscriber receives (all must get all)."""

    def __init__(self, ctx: BenchContext, n: int = 4, per_round: int = 5000, decode: bool = False) -> None:
        self.ops = self.per_round = per_round
        self.n = n
        what = "each unpacks (msgpack)" if decode else "raw bytes, each only counts"
        self.note = f"PUB/SUB ipc 1 -> {n} processes, HWM unlimited, {what}; rate each receives"
        pub_addr, ctl_addr = _unique(ctx, "pub"), _unique(ctx, "ctl")
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
        import time

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
                _stop(proc, 5)
            self.pub.close(linger=0)
            self.ctl.close(linger=0)
            self.zctx.term()


# ---------------------------------------------------------------------------- process start


class ForkStart(Workload):
    """A helper process starts a child per round; the round ends at the child's first byte.

    Args:
        preload_torch: the helper imported torch and uses ``os.fork`` (a bare fork server).
        child_imports_torch: else, multiprocessing's fork from a torch-free parent, and the
            child imports torch itself.
    """

    def __init__(self, ctx: BenchContext, preload_torch: bool, child_imports_torch: bool = True) -> None:
        if preload_torch:
            self.note = "os.fork() from a parent with torch imported -> child's first byte (no zmq, no setup)"
        else:
            self.note = "mp fork from a torch-free parent, child imports torch -> first byte"
            self.max_samples = 3 if ctx.quick else 10  # ~1 s each
            self.warmup = False  # every start is cold anyway
        self.conn, child = MP.Pipe()
        # Not a daemonic process: those may not have children. close() stops it.
        self.proc = MP.Process(target=srv.fork_helper, args=(child, preload_torch, child_imports_torch))
        self.proc.start()
        child.close()
        try:
            srv.wait_ready(self.conn, START_TIMEOUT, "the fork helper")
        except BaseException:
            self.close()
            raise

    def round(self) -> None:
        self.conn.send_bytes(b"start")
        if not self.conn.poll(REPLY_TIMEOUT):
            raise TimeoutError("the child did not answer")
        if self.conn.recv_bytes() != b"ok":
            raise RuntimeError("the child failed")

    def close(self) -> None:
        try:
            with contextlib.suppress(OSError):
                self.conn.send_bytes(b"stop")
        finally:
            self.conn.close()
            _stop(self.proc, 30)


# ---------------------------------------------------------------------------- tensors


def _source(mib: int) -> Any:
    import torch

    return torch.ones(mib * MIB // 4, dtype=torch.float32)  # pages touched


class ZmqTensor(_ZmqClient):
    """zmq REQ/REP: the tensor's buffer sent with ``copy=False``, read in place by the receiver."""

    note = "REQ/REP ipc, send(copy=False), receiver maps the frame (no copy)"

    def __init__(self, ctx: BenchContext, mib: int) -> None:
        self.ops = self.per_round = tensor_round(ctx, mib)
        self.t = _source(mib)
        super().__init__(ctx, "tensor", zmq.REQ, srv.tensor_rep_server)

    def round(self) -> None:
        t, sock = self.t, self.sock
        view = memoryview(t.numpy())
        for i in range(self.per_round):
            t[-1] = i
            sock.send(view, copy=False)
            if struct.unpack("d", sock.recv())[0] != i:
                raise RuntimeError("stale tensor")


class TorchQueue(Workload):
    """torch.multiprocessing.Queue: the tensor's storage moves to shared memory and its fd travels.

    Args:
        shared: the tensor is already in shared memory (``share_memory_()`` beforehand);
            else each transfer starts from a fresh tensor, which ``put`` copies into shm.
    """

    def __init__(self, ctx: BenchContext, mib: int, shared: bool) -> None:
        import torch.multiprocessing as tmp

        self.mib = mib
        self.shared = shared
        self.ops = self.per_round = tensor_round(ctx, mib, zero_copy=shared)
        self.note = (
            "torch.mp.Queue, tensor already in shm: fd passing only"
            if shared
            else "torch.mp.Queue, fresh tensor: put() copies it into shm"
        )
        tctx = tmp.get_context("spawn")
        self.queue = tctx.Queue()
        self.conn, child = tctx.Pipe()
        self.proc = tctx.Process(target=srv.torch_queue_reader, args=(self.queue, child), daemon=True)
        self.proc.start()
        child.close()
        self.t = _source(mib).share_memory_() if shared else None
        self.fresh: list[Any] = []

    def setup(self) -> None:
        if not self.shared:
            self.fresh = [_source(self.mib) for _ in range(self.per_round)]  # not timed

    def round(self) -> None:
        for i in range(self.per_round):
            t: Any = self.t if self.shared else self.fresh[i]
            t[-1] = i
            self.queue.put(t)
            if _recv(self.conn, "the torch.mp reader") != i:
                raise RuntimeError("stale tensor")
        self.fresh = []

    def close(self) -> None:
        try:
            self.queue.put(None)
        finally:
            _stop(self.proc)
            self.conn.close()
            self.queue.close()
            self.queue.join_thread()


class Memcpy(Workload):
    """One ``copy_`` of the tensor into another, already touched, in this process: the floor
    under any transfer that copies the bytes once."""

    note = "torch copy_ into a touched tensor of the same size, in one process (no transfer)"

    def __init__(self, ctx: BenchContext, mib: int) -> None:
        self.ops = self.per_round = tensor_round(ctx, mib)
        self.src = _source(mib)
        self.dst = _source(mib)

    def round(self) -> None:
        src, dst = self.src, self.dst
        for i in range(self.per_round):
            src[-1] = i
            dst.copy_(src)
            if float(dst[-1]) != i:
                raise RuntimeError("stale copy")


class ShmNewSegment(Workload):
    """A new shared-memory segment per transfer (what ``multiprocessing.shared_memory`` users
    do): create it, copy the tensor in, send its name; the reader maps it, reads, unmaps."""

    note = "new /dev/shm segment per transfer, tensor copied in, name sent over a Pipe (as shared_memory)"

    def __init__(self, ctx: BenchContext, mib: int) -> None:
        self.ops = self.per_round = tensor_round(ctx, mib)
        self.t = _source(mib)
        self.numel = self.t.numel()
        self.conn, child = MP.Pipe()
        self.proc = MP.Process(target=srv.shm_fresh_reader, args=(child,), daemon=True)
        self.proc.start()
        child.close()

    def round(self) -> None:
        import mmap

        import torch

        t, conn, nbytes = self.t, self.conn, self.numel * 4
        for i in range(self.per_round):
            t[-1] = i
            path = f"/dev/shm/llmos-bench-{os.getpid()}-{next(_names)}"
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.ftruncate(fd, nbytes)
                segment = mmap.mmap(fd, nbytes)
            finally:
                os.close(fd)
            try:
                torch.frombuffer(segment, dtype=torch.float32).copy_(t)
                conn.send((path, self.numel))
                if _recv(conn, "the shm reader") != i:
                    raise RuntimeError("stale tensor")
            finally:
                os.unlink(path)
                with contextlib.suppress(BufferError):
                    segment.close()

    def close(self) -> None:
        _stop_reader(self.conn, self.proc)


class ShmSegment(Workload):
    """The tensor lives in a /dev/shm file both sides keep mapped; only its name travels (a Pipe)."""

    note = "tensor in a mapped /dev/shm file; the path travels over a Pipe, the reader keeps its mapping"

    def __init__(self, ctx: BenchContext, mib: int) -> None:
        import mmap

        import torch

        self.ops = self.per_round = tensor_round(ctx, mib, zero_copy=True)
        self.numel = mib * MIB // 4
        self.path = f"/dev/shm/llmos-bench-{os.getpid()}-{next(_names)}"
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.ftruncate(fd, self.numel * 4)
            self.map = mmap.mmap(fd, self.numel * 4)
        finally:
            os.close(fd)
        self.t = torch.frombuffer(self.map, dtype=torch.float32)
        self.t.fill_(1.0)
        self.conn, child = MP.Pipe()
        self.proc = MP.Process(target=srv.shm_reader, args=(child,), daemon=True)
        self.proc.start()
        child.close()

    def round(self) -> None:
        t, conn = self.t, self.conn
        for i in range(self.per_round):
            t[-1] = i
            conn.send((self.path, self.numel))
            if _recv(conn, "the shm reader") != i:
                raise RuntimeError("stale tensor")

    def close(self) -> None:
        try:
            _stop_reader(self.conn, self.proc)
        finally:
            del self.t
            self.map.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)


# ---------------------------------------------------------------------------- Ray


def _ray(kind: str, **fixed: Any) -> Callable[..., Workload]:
    """A peer opener for a Ray workload ``kind`` (see ``ray_driver``)."""

    def open_ray(ctx: BenchContext, **params: Any) -> Workload:
        assert ctx.ray is not None
        return ctx.ray.open(kind, **{**fixed, **params})

    return open_ray


def _ray_tensor(ctx: BenchContext, mib: int) -> Workload:
    assert ctx.ray is not None
    return ctx.ray.open("tensor_arg", mib=mib, per_round=tensor_round(ctx, mib))


# ---------------------------------------------------------------------------- registry


def _needs_torch(ctx: BenchContext) -> str | None:
    return None if importlib.util.find_spec("torch") else "torch is not installed (pip install llmos-actors[torch])"


def _needs_ray(ctx: BenchContext) -> str | None:
    if ctx.ray is None:
        return "Ray peers are off"
    reason = ctx.ray.unavailable()
    return f"{reason}; pip install 'llmos-actors[peers]' or pass --ray-python" if reason else None


def _always(ctx: BenchContext) -> str | None:
    return None


@dataclass(frozen=True)
class Peer:
    """Another way to do a case's work.

    Attributes:
        id: registry key (cases list peers by id).
        label: what the table calls it.
        open: ``open(ctx, **case_params) -> Workload``.
        requires: ``requires(ctx) -> reason or None``: why it cannot run here.
        group: "ray" for peers that run in the Ray driver (they run after all others,
            so Ray's background processes never disturb the rest).
    """

    id: str
    label: str
    open: Callable[..., Workload]
    requires: Callable[[BenchContext], str | None] = _always
    group: str = ""


def _llmos_priority(ctx: BenchContext, policy: str, loaded: bool, beside: bool = False) -> Workload:
    """Our own actor as the comparison: with a FIFO mailbox, without load, or idle beside the load."""
    from .ours import PriorityUnderLoad

    return PriorityUnderLoad(ctx, policy, loaded, beside)


def _llmos_single_actor(ctx: BenchContext) -> Workload:
    """The pool case's work sent to one actor: what the pool is for."""
    from .ours import PoolThroughput

    return PoolThroughput(ctx, single=True)


def _llmos_get_not_owner(ctx: BenchContext) -> Workload:
    """The get case from a process that did not put the object: the daemon's store is asked."""
    from .ours import GetCalls

    return GetCalls(ctx, owner=False)


#: Acquire+release cycles per contender per round for ``multiprocessing.Lock`` (a futex: ~µs each).
MP_LOCK_CYCLES = 20_000


def _mp_lock_pair(ctx: BenchContext) -> Workload:
    from .lockpair import LockPair

    cycles = MP_LOCK_CYCLES // 4 if ctx.quick else MP_LOCK_CYCLES
    note = "multiprocessing.Lock: a semaphore in shared memory, no daemon (not freed if its holder dies)"
    return LockPair(None, cycles, note)


PEERS: dict[str, Peer] = {
    p.id: p
    for p in (
        Peer("zmq_req_rep", "pyzmq REQ/REP", lambda ctx, **_: ZmqReqRep(ctx)),
        Peer("mp_pipe", "multiprocessing.Pipe", lambda ctx, **_: MpPipe(ctx)),
        Peer("zmq_dealer_router", "pyzmq DEALER/ROUTER", lambda ctx, **kw: ZmqDealerRouter(ctx, kw.get("n", 1))),
        Peer("zmq_push_pull", "pyzmq PUSH/PULL", lambda ctx, **_: ZmqPushPull(ctx)),
        Peer("zmq_pub_sub", "pyzmq PUB/SUB", lambda ctx, **kw: ZmqPubSub(ctx, kw.get("n", 4))),
        Peer(
            "zmq_pub_sub_msgpack",
            "pyzmq PUB/SUB + unpack",
            lambda ctx, **kw: ZmqPubSub(ctx, kw.get("n", 4), decode=True),
        ),
        Peer(
            "fork_torch_parent",
            "os.fork, torch in parent",
            lambda ctx, **_: ForkStart(ctx, preload_torch=True),
            _needs_torch,
        ),
        Peer(
            "mp_fork_torch_child",
            "mp fork, child imports torch",
            lambda ctx, **_: ForkStart(ctx, preload_torch=False),
            _needs_torch,
        ),
        Peer("zmq_tensor", "pyzmq copy=False", lambda ctx, mib, **_: ZmqTensor(ctx, mib), _needs_torch),
        Peer("llmos_fifo_under_load", "llmos, FIFO mailbox", lambda ctx, **_: _llmos_priority(ctx, "fifo", True)),
        Peer("llmos_unloaded", "llmos, idle actor", lambda ctx, **_: _llmos_priority(ctx, "priority", False)),
        Peer(
            "llmos_idle_beside_load",
            "llmos, idle actor beside the flood",
            lambda ctx, **_: _llmos_priority(ctx, "priority", True, beside=True),
        ),
        Peer("llmos_single_actor", "llmos, one actor", lambda ctx, **_: _llmos_single_actor(ctx)),
        Peer("llmos_get_not_owner", "llmos, not the owner", lambda ctx, **_: _llmos_get_not_owner(ctx)),
        Peer("mp_lock", "multiprocessing.Lock", lambda ctx, **_: _mp_lock_pair(ctx)),
        Peer(
            "torch_mp_queue",
            "torch.mp.Queue (fresh)",
            lambda ctx, mib, **_: TorchQueue(ctx, mib, shared=False),
            _needs_torch,
        ),
        Peer(
            "torch_mp_queue_shared",
            "torch.mp.Queue (in shm)",
            lambda ctx, mib, **_: TorchQueue(ctx, mib, shared=True),
            _needs_torch,
        ),
        Peer("shm_segment", "mapped /dev/shm file", lambda ctx, mib, **_: ShmSegment(ctx, mib), _needs_torch),
        Peer("shm_new_segment", "new shm segment each", lambda ctx, mib, **_: ShmNewSegment(ctx, mib), _needs_torch),
        Peer("memcpy", "memcpy (one copy_)", lambda ctx, mib, **_: Memcpy(ctx, mib), _needs_torch),
        Peer("ray_sync", "Ray", _ray("calls_sync", per_round=100), _needs_ray, "ray"),
        Peer("ray_async", "Ray", _ray("calls_async", window=ASYNC_WINDOW), _needs_ray, "ray"),
        Peer(
            "ray_concurrent",
            "Ray (max_concurrency=16)",
            _ray("calls_async", window=ASYNC_WINDOW, max_concurrency=16),
            _needs_ray,
            "ray",
        ),
        Peer(
            "ray_1n",
            "Ray",
            lambda ctx, n=2, **_: _ray("calls_async", window=ASYNC_WINDOW, n_actors=n)(ctx),
            _needs_ray,
            "ray",
        ),
        Peer(
            "ray_nn",
            "Ray",
            lambda ctx, n=2, **_: _ray("nn_calls", n=n, calls=nn_calls(ctx), window=ASYNC_WINDOW)(ctx),
            _needs_ray,
            "ray",
        ),
        Peer("ray_spawn", "Ray", _ray("spawn"), _needs_ray, "ray"),
        Peer("ray_tensor", "Ray (actor arg)", lambda ctx, mib, **_: _ray_tensor(ctx, mib), _needs_ray, "ray"),
        Peer("ray_put_gigabytes", "Ray", _ray("put_gigabytes"), _needs_ray, "ray"),
        Peer("ray_get_calls", "Ray", _ray("get_calls", per_round=1000), _needs_ray, "ray"),
    )
}
# Our own daemon with metrics / tracing on, beside the same with them off (see metrics_cases).
PEERS.update({fields[0]: Peer(*fields) for fields in metrics_cases.peers()})
