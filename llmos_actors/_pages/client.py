"""A process's side of the pool: one mapping, one channel, local leases and an arena.

One ``PageClient`` per process and daemon (``client_for(runtime_dir)``), shared by every
kernel handle, actor runtime and codec of that process: the pool is mapped once per
process, and everything the process tells the page table goes down one FIFO channel.

Local bookkeeping. A *lease* is a uint8 ndarray over a range of pool pages; every tensor
or array we hand out is a view of one (torch keeps the ndarray alive through its storage,
numpy through ``.base``), and a ``weakref.finalize`` on it notices when the last view
dies. Per block we count live leases; when none is left we release our hold. Finalizers
never touch the socket or the tables directly (they may run inside any code, on any
thread, even while this thread holds the lock): they queue the block and whoever holds
the lock next — or the finalizer itself, if the lock is free — does the release.

Arena: allocations up to a quarter of a chunk are carved (bump pointer) from a chunk the
daemon grants in one round trip, so small tensors cost no daemon round trip. A chunk
none of whose allocations was ever sent is reset when they all die; once one was sent,
its used part is never reused here (a receiver may still map it) and the chunk is
released when its last local allocation dies and it is full.
"""

from __future__ import annotations

import bisect
import collections
import gc
import itertools
import mmap
import os
import socket
import sys
import threading
import time
import warnings
import weakref
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ObjectLost, PoolExhausted, ProtocolError
from . import channel as C
from .layout import PoolMap
from .owned import OwnValues
from .ring import Ring

#: Arena allocations are aligned like malloc's large blocks (vector loads, torch kernels).
ALIGN = 64
#: Seconds to wait for a reply on the channel (the daemon answers at once; this bounds a hang).
REPLY_TIMEOUT = 30.0
#: After a failed attach, try again at most this often (the daemon may come later).
RETRY_ATTACH = 2.0
#: Default inline threshold until the daemon says otherwise.
INLINE_THRESHOLD = 64 * 1024

_U8 = np.dtype(np.uint8)


class LocalBlock:
    """A block this process maps: how many leases view it and how many holds it owes."""

    __slots__ = ("arena", "bump", "gen", "holds", "leases", "pages", "retired", "shared", "start")

    def __init__(self, start: int, pages: int, gen: int, *, holds: int = 1, arena: bool = False) -> None:
        self.start = start
        self.pages = pages
        self.gen = gen
        self.holds = holds
        self.leases = 0
        self.arena = arena
        self.bump = 0
        self.shared = False
        self.retired = False


class PageClient:
    """This process's attachment to one daemon's pool (see the module docstring)."""

    def __init__(self, runtime_dir: Path) -> None:
        self.runtime_dir = runtime_dir
        self.lock = threading.Lock()
        self.users = 0
        self.pid = 0
        self.sock: socket.socket | None = None
        self.pool: PoolMap | None = None
        self.ring: Ring | None = None
        self.info: dict = {}
        self.available = False
        self._failed_at = -RETRY_ATTACH - 1.0
        self.error = ""
        self.blocks: dict[int, LocalBlock] = {}
        self.starts: list[int] = []
        self.chunk: LocalBlock | None = None
        self.dead: collections.deque = collections.deque()
        self._refs: dict[int, tuple[weakref.ref, int, int]] = {}
        self.seq = itertools.count(1)
        self.inline_threshold = INLINE_THRESHOLD
        self.own_values = OwnValues()

    # ------------------------------------------------------------------ locking
    def _unlock(self) -> None:
        """Release the lock, then do any releases queued by finalizers meanwhile."""
        self.lock.release()
        while self.dead and self.lock.acquire(False):
            try:
                self._reap()
            finally:
                self.lock.release()

    def _ref_died(self, ref: weakref.ref) -> None:
        """A lease died (any thread, any time): queue it, and release now if the lock is free."""
        entry = self._refs.pop(id(ref), None)
        if entry is None:
            return
        self.dead.append(entry[1:])
        if self.lock.acquire(False):
            try:
                self._reap()
            except Exception:
                pass
            finally:
                self._unlock()

    def _reap(self) -> None:
        dead = self.dead
        while dead:
            start, gen = dead.popleft()
            block = self.blocks.get(start)
            if block is None or block.gen != gen:
                continue
            block.leases -= 1
            if block.leases > 0:
                continue
            if block.arena and not block.retired:
                if not block.shared:
                    block.bump = 0  # nobody else ever saw it: reuse from the start
                continue
            self._drop(block)
        if not self.blocks and self.users <= 0:
            self._close_locked()

    def _drop(self, block: LocalBlock) -> None:
        del self.blocks[block.start]
        i = bisect.bisect_left(self.starts, block.start)
        if i < len(self.starts) and self.starts[i] == block.start:
            del self.starts[i]
        if self.chunk is block:
            self.chunk = None
        if block.holds:
            self._note(C.RELEASE, block.start, block.gen, block.holds)

    def _register(self, block: LocalBlock) -> None:
        self.blocks[block.start] = block
        bisect.insort(self.starts, block.start)

    # ------------------------------------------------------------------ users
    def use(self) -> None:
        self.lock.acquire()
        self.users += 1
        self._unlock()

    def unuse(self) -> None:
        """A codec or kernel let go; the mapping goes once nothing uses or views it."""
        self.lock.acquire()
        try:
            self.users -= 1
            if self.users <= 0:
                chunk = self.chunk
                if chunk is not None:
                    chunk.retired = True
                    self.chunk = None
                    if chunk.leases == 0:
                        self._drop(chunk)
                if not self.blocks:
                    self._close_locked()
        finally:
            self._unlock()

    # ------------------------------------------------------------------ attach
    def attach(self) -> bool:
        """Map the pool if not done yet; False if this daemon has none (inline fallback)."""
        if self.available:
            return True
        self.lock.acquire()
        try:
            return self._attach_locked()
        finally:
            self._unlock()

    def _attach_locked(self) -> bool:
        if self.available:
            return True
        if time.monotonic() - self._failed_at < RETRY_ATTACH:
            return False
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        sock.settimeout(REPLY_TIMEOUT)
        fds: list[int] = []
        try:
            sock.connect(str(self.runtime_dir / C.SOCKET_NAME))
            sock.sendall(C.frame(C.HELLO, {"pid": os.getpid()}))
            data, fds, _flags, _addr = socket.recv_fds(sock, 1 << 16, 4)
            reader = C.FrameReader()
            frames = reader.feed(data)
            while not frames:
                more = sock.recv(1 << 16)
                if not more:
                    raise ConnectionError("the daemon closed the pages channel")
                frames = reader.feed(more)
            info = frames[0]
            if not fds or type(info) is not dict or "pool_id" not in info:
                raise ConnectionError(f"unexpected hello reply: {info!r:.200}")
            if len(fds) < 2:
                raise ConnectionError("the daemon sent no note ring")
            pool = PoolMap(fds[0])
            ring = Ring(mmap.mmap(fds[1], Ring.size()))
        except (OSError, ValueError) as exc:
            sock.close()
            for fd in fds:
                os.close(fd)
            self._failed_at = time.monotonic()
            self.error = f"no shared-memory pool at {self.runtime_dir}: {exc}"
            return False
        for fd in fds:
            os.close(fd)  # the mappings keep the memory; no descriptor stays open
        self.sock, self.pool, self.ring, self.info, self.pid = sock, pool, ring, info, os.getpid()
        self.inline_threshold = int(info.get("inline_threshold", INLINE_THRESHOLD))
        _quiet_readonly_warning()
        self.available = True
        self.error = ""
        return True

    def forget_after_fork(self) -> None:
        """In a forked child (``os.register_at_fork``): the state and holds are the parent's, not ours."""
        self.lock = threading.Lock()  # it may have been held by another thread at the fork
        self._forget_daemon_state()  # the ring is the parent's: never write to it
        self.pid = 0
        self._failed_at = -RETRY_ATTACH - 1.0

    def _lost_daemon(self) -> None:
        """The daemon is gone (or restarted): forget its pool; the next use attaches afresh.

        Arrays still viewing the old pool keep their memory (their mappings stay until they
        die); their releases have nobody to go to, and any of them sent later is copied in.
        """
        self._forget_daemon_state()
        self.pool = None

    def _forget_daemon_state(self) -> None:
        """Drop the channel and everything recorded about blocks, holds and stored values."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        self.ring = None
        self.blocks.clear()
        self.starts.clear()
        self.chunk = None
        self.dead.clear()
        self._refs.clear()
        self.own_values.clear()
        self.available = False

    def _close_locked(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        if self.ring is not None:
            self.ring.close()
            self.ring = None
        if self.pool is not None:
            self.pool.close()
            self.pool = None
        self.available = False
        self._failed_at = -RETRY_ATTACH - 1.0

    def require(self) -> PoolMap:
        if not self.attach():
            raise ProtocolError(self.error or f"no shared-memory pool at {self.runtime_dir}")
        assert self.pool is not None
        return self.pool

    # ------------------------------------------------------------------ channel
    def _note(self, *parts: Any) -> None:
        """Tell the page table something (no answer): through the ring, no system call (lock held)."""
        frame = C.frame(*parts)
        ring = self.ring
        if ring is None or ring.write(frame):
            return
        # Full: have the daemon read it, then write. Never around the ring: notes keep their order.
        try:
            self._request(C.DRAIN)
        except ProtocolError:
            return  # the daemon is gone: it took the page table with it
        if self.ring is not None and not self.ring.write(frame):
            raise ProtocolError(f"a note of {len(frame)} bytes does not fit the note ring")

    def _request(self, *parts: Any) -> dict:
        sock = self.sock
        if sock is None:
            raise ProtocolError(f"the pages channel to {self.runtime_dir} is closed")
        reader = C.FrameReader()
        try:
            sock.sendall(C.frame(*parts))
            frames: list = []
            while not frames:
                data = sock.recv(1 << 16)
                if not data:
                    raise ConnectionError("the daemon closed the pages channel")
                frames = reader.feed(data)
        except OSError as exc:
            self._lost_daemon()
            raise ProtocolError(f"pages channel to the daemon failed: {exc}") from exc
        reply = frames[0]
        if type(reply) is not dict:
            raise ProtocolError(f"malformed reply on the pages channel: {reply!r:.200}")
        return reply

    # ------------------------------------------------------------------ leases
    def _lease(
        self, block: LocalBlock, offset: int, nbytes: int, *, readonly: bool = False, dtype: Any = _U8
    ) -> np.ndarray:
        """A flat view of ``nbytes`` at ``offset`` in ``block`` (uint8, or ``dtype`` when its item
        size divides ``nbytes``); its death releases the lease."""
        pool = self.pool
        assert pool is not None
        mm = pool.rodata if readonly else pool.data
        assert mm is not None
        base = np.frombuffer(
            mm, dtype=dtype, count=nbytes // dtype.itemsize, offset=block.start * pool.page_size + offset
        )
        block.leases += 1
        # A plain weakref with a callback (cheaper than weakref.finalize); we keep the ref alive.
        ref = weakref.ref(base, self._ref_died)
        self._refs[id(ref)] = (ref, block.start, block.gen)
        return base

    def alloc(self, nbytes: int, *, timeout: float | None = None) -> np.ndarray:
        """``nbytes`` of pool memory as a writable uint8 lease (shared mapping).

        Raises:
            PoolExhausted: no room after spilling and waiting ``alloc_timeout`` (or ``timeout``).
        """
        for attempt in (1, 2):
            self.require()
            try:
                return self._alloc(nbytes, timeout)
            except ProtocolError:
                if attempt == 2 or self.available:
                    raise  # a daemon that restarted gets one more try, with its new pool
        raise AssertionError("unreachable")

    def _alloc(self, nbytes: int, timeout: float | None) -> np.ndarray:
        chunk_size = int(self.info.get("chunk_size", 4 << 20))
        if nbytes <= chunk_size // 4:
            return self._arena_alloc(max(nbytes, 1), chunk_size, timeout)[:nbytes]
        self.lock.acquire()
        try:
            block = self._new_block(nbytes, timeout, arena=False)
            return self._lease(block, 0, nbytes)
        finally:
            self._unlock()

    def _arena_alloc(self, nbytes: int, chunk_size: int, timeout: float | None) -> np.ndarray:
        self.lock.acquire()
        try:
            chunk = self.chunk
            if chunk is not None:
                offset = -(-chunk.bump // ALIGN) * ALIGN
                if offset + nbytes <= chunk_size:
                    chunk.bump = offset + nbytes
                    return self._lease(chunk, offset, nbytes)
                chunk.retired = True
                self.chunk = None
                if chunk.leases == 0:
                    self._drop(chunk)
            chunk = self._new_block(chunk_size, timeout, arena=True)
            self.chunk = chunk
            chunk.bump = nbytes
            return self._lease(chunk, 0, nbytes)
        finally:
            self._unlock()

    def _new_block(self, nbytes: int, timeout: float | None, *, arena: bool) -> LocalBlock:
        """Ask the daemon for a block (lock held); waits for room, releasing the lock meanwhile."""
        wait = float(self.info.get("alloc_timeout", 10.0)) if timeout is None else timeout
        deadline = time.monotonic() + wait
        delay = 0.001
        collected = False
        while True:
            reply = self._request(C.ALLOC, nbytes)
            if "start" in reply:
                block = LocalBlock(reply["start"], reply["pages"], reply["gen"], arena=arena)
                self._register(block)
                return block
            if reply.get("error") != "full" or time.monotonic() >= deadline:
                raise PoolExhausted(
                    f"shared-memory pool exhausted: {reply.get('message', reply)}"
                    + (f" (waited {wait:g} s; [pages] alloc_timeout)" if reply.get("error") == "full" else "")
                )
            # Let go of the lock (queued releases go out), collect garbage once, then retry.
            self._unlock()
            try:
                if not collected:
                    gc.collect()
                    collected = True
                else:
                    time.sleep(delay)
                    delay = min(delay * 2, 0.05)
            finally:
                self.lock.acquire()

    # ------------------------------------------------------------------ sending
    def locate(self, low: int, span: int) -> tuple[LocalBlock, bool, int] | None:
        """The held block whose pages contain ``[low, low + span)``: ``(block, readonly, offset)``."""
        pool = self.pool
        if pool is None:
            return None
        if pool.base <= low and low + span <= pool.base + pool.data_bytes:
            rel, readonly = low - pool.base, False
        elif pool.robase <= low and low + span <= pool.robase + pool.data_bytes:
            rel, readonly = low - pool.robase, True
        else:
            return None
        ps = pool.page_size
        self.lock.acquire()
        try:
            i = bisect.bisect_right(self.starts, rel // ps) - 1
            if i < 0:
                return None
            block = self.blocks[self.starts[i]]
        finally:
            self._unlock()
        offset = rel - block.start * ps
        if offset + span > block.pages * ps:
            return None
        return block, readonly, offset

    def sent(self, block: LocalBlock, fanout: bool) -> tuple[int, int]:
        """Register a handle to ``block`` that is about to leave in a message; returns its token."""
        seq = next(self.seq)
        self.lock.acquire()
        try:
            if block.arena:
                block.shared = True
            self._note(C.SEND, seq, block.start, block.gen, fanout)
        finally:
            self._unlock()
        return self.pid, seq

    # ------------------------------------------------------------------ receiving
    def take(
        self,
        start: int,
        pages: int,
        gen: int,
        base_off: int,
        span: int,
        sender: int,
        seq: int,
        *,
        readonly: bool,
        dtype: Any = _U8,
    ) -> np.ndarray:
        """Map a received handle (already validated) as a lease; tells the daemon we took it."""
        self.lock.acquire()
        try:
            if self.pool is None:  # detached meanwhile (every kernel closed, or the daemon went away)
                raise ProtocolError(f"no shared-memory pool attached for {self.runtime_dir}")
            block = self.blocks.get(start)
            if block is None:
                block = LocalBlock(start, pages, gen, holds=1)
                self._register(block)
                adopt = True
            elif block.gen != gen:
                raise ProtocolError("stale page handle: its pages were reused")
            else:
                adopt = False
            self._note(C.TAKE, sender, seq, start, gen, adopt)
            return self._lease(block, base_off, span, readonly=readonly, dtype=dtype)
        finally:
            self._unlock()

    # ------------------------------------------------------------------ object store
    def put(self, block: LocalBlock, meta: list, detached: bool) -> str:
        self.lock.acquire()
        try:
            if block.arena:
                block.shared = True
            reply = self._request(C.PUT, block.start, block.gen, meta, detached)
        finally:
            self._unlock()
        if "oid" not in reply:
            raise ProtocolError(f"put failed: {reply.get('message', reply)}")
        return reply["oid"]

    def get(self, oid: str, timeout: float | None = None) -> tuple[np.ndarray, list]:
        """Map a stored object (read-only); returns its lease and metadata."""
        pool = self.require()
        wait = float(self.info.get("alloc_timeout", 10.0)) if timeout is None else timeout
        deadline = time.monotonic() + wait
        while True:
            self.lock.acquire()
            try:
                reply = self._request(C.GET, oid)
                if "start" in reply:
                    start, pages, gen, meta = reply["start"], reply["pages"], reply["gen"], reply["meta"]
                    block = self.blocks.get(start)
                    if block is None or block.gen != gen:
                        block = LocalBlock(start, pages, gen, holds=1)
                        self._register(block)
                    else:
                        block.holds += 1
                    base_off, span = meta[4], meta[5]
                    if base_off + span > pages * pool.page_size:
                        raise ProtocolError("stored object lies outside its pages")
                    return self._lease(block, base_off, span, readonly=True), meta
            finally:
                self._unlock()
            if reply.get("error") == "missing":
                raise ObjectLost(reply.get("message", f"no object {oid!r}"))
            if reply.get("error") != "full" or time.monotonic() >= deadline:
                raise PoolExhausted(f"cannot restore object {oid}: {reply.get('message', reply)}")
            time.sleep(0.01)

    def free(self, oid: str) -> None:
        self.own_values.drop(oid)
        self.require()
        self.lock.acquire()
        try:
            reply = self._request(C.FREE, oid)
        finally:
            self._unlock()
        if reply.get("error") == "missing":
            raise ObjectLost(reply.get("message", f"no object {oid!r}"))

    def numbers(self) -> dict[str, int]:
        """This process's side: blocks mapped and live leases (for tests and debugging)."""
        self.lock.acquire()
        try:
            return {"blocks": len(self.blocks), "leases": sum(b.leases for b in self.blocks.values())}
        finally:
            self._unlock()


def _quiet_readonly_warning() -> None:
    """torch warns (once per process) when a tensor views read-only memory, which ours do on
    purpose: take that one warning here, silenced, so user code never sees it."""
    torch = sys.modules.get("torch")
    if torch is None:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.from_numpy(np.frombuffer(b"\0" * 8, dtype=_U8))
