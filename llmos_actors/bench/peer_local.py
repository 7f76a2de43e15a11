"""Peers on one machine without a network: multiprocessing pipes, fork, torch.multiprocessing, shared memory."""

from __future__ import annotations

import contextlib
import os
from typing import Any

import msgpack

from . import peer_servers as srv
from .context import BenchContext
from .ours import MIB, SYNC_ROUND, tensor_round
from .payload import PAYLOAD_BYTES, request_bytes
from .peer_procs import MP, REPLY_TIMEOUT, START_TIMEOUT, recv_reply, shm_path, stop_proc, stop_reader, tensor_source
from .workload import Workload


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
            stop_proc(self.proc)


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
            stop_proc(self.proc, 30)


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
        self.t = tensor_source(mib).share_memory_() if shared else None
        self.fresh: list[Any] = []

    def setup(self) -> None:
        if not self.shared:
            self.fresh = [tensor_source(self.mib) for _ in range(self.per_round)]  # not timed

    def round(self) -> None:
        for i in range(self.per_round):
            t: Any = self.t if self.shared else self.fresh[i]
            t[-1] = i
            self.queue.put(t)
            if recv_reply(self.conn, "the torch.mp reader") != i:
                raise RuntimeError("stale tensor")
        self.fresh = []

    def close(self) -> None:
        try:
            self.queue.put(None)
        finally:
            stop_proc(self.proc)
            self.conn.close()
            self.queue.close()
            self.queue.join_thread()


class Memcpy(Workload):
    """One ``copy_`` of the tensor into another, already touched, in this process: the floor
    under any transfer that copies the bytes once."""

    note = "torch copy_ into a touched tensor of the same size, in one process (no transfer)"

    def __init__(self, ctx: BenchContext, mib: int) -> None:
        self.ops = self.per_round = tensor_round(ctx, mib)
        self.src = tensor_source(mib)
        self.dst = tensor_source(mib)

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
        self.t = tensor_source(mib)
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
            path = shm_path()
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.ftruncate(fd, nbytes)
                segment = mmap.mmap(fd, nbytes)
            finally:
                os.close(fd)
            try:
                torch.frombuffer(segment, dtype=torch.float32).copy_(t)
                conn.send((path, self.numel))
                if recv_reply(conn, "the shm reader") != i:
                    raise RuntimeError("stale tensor")
            finally:
                os.unlink(path)
                with contextlib.suppress(BufferError):
                    segment.close()

    def close(self) -> None:
        stop_reader(self.conn, self.proc)


class ShmSegment(Workload):
    """The tensor lives in a /dev/shm file both sides keep mapped; only its name travels (a Pipe)."""

    note = "tensor in a mapped /dev/shm file; the path travels over a Pipe, the reader keeps its mapping"

    def __init__(self, ctx: BenchContext, mib: int) -> None:
        import mmap

        import torch

        self.ops = self.per_round = tensor_round(ctx, mib, zero_copy=True)
        self.numel = mib * MIB // 4
        self.path = shm_path()
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
            if recv_reply(conn, "the shm reader") != i:
                raise RuntimeError("stale tensor")

    def close(self) -> None:
        try:
            stop_reader(self.conn, self.proc)
        finally:
            del self.t
            self.map.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
