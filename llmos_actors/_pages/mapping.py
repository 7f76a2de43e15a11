"""A process's attachment to the daemon's pages: one mapping, one channel, local leases.

Local bookkeeping. A *lease* is a uint8 ndarray over a range of pool pages; every tensor
or array we hand out is a view of one (torch keeps the ndarray alive through its storage,
numpy through ``.base``), and a weak reference on it notices when the last view dies.
Per block we count live leases; when none is left we release our hold. Those callbacks
never touch the socket or the tables directly (they may run inside any code, on any
thread, even while this thread holds the lock): they queue the block and whoever holds
the lock next — or the callback itself, if the lock is free — does the release.

Notes to the page table go through a ring in shared memory (no system call); requests
and replies through the unix socket; the daemon applies a process's notes before its
next request.
"""

from __future__ import annotations

import bisect
import collections
import os
import socket
import threading
import time
import weakref
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ProtocolError
from . import channel as C
from .attach import attach_channel, quiet_readonly_warning
from .layout import PageRegion
from .owned import OwnValues
from .ring import Ring

#: Seconds to wait for a reply on the channel (the daemon answers at once; this bounds a hang).
REPLY_TIMEOUT = 30.0
#: After a failed attach, try again at most this often (the daemon may come later).
RETRY_ATTACH = 2.0
#: Default inline threshold until the daemon says otherwise.
INLINE_THRESHOLD = 64 * 1024

U8 = np.dtype(np.uint8)


class PagesSealed(ProtocolError):
    """Pages already shared read-only: nobody but their owner may map them writable."""


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        os.close(fd)


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


class PagesMapping:
    """This process's attachment to one daemon's pages: mapping, channel, lease bookkeeping.

    ``PageClient`` adds what a process does with pages (allocate, send, receive, store).
    """

    def __init__(self, runtime_dir: Path) -> None:
        self.runtime_dir = runtime_dir
        self.lock = threading.Lock()
        self.users = 0
        self.pid = 0
        self.sock: socket.socket | None = None
        self.region: PageRegion | None = None
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
        self.inline_threshold = INLINE_THRESHOLD
        self.own_values = OwnValues()
        #: Descriptors that came with the last answer on the channel (the caller closes them).
        self.fds: list[int] = []

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
        try:
            sock, region, ring, info = attach_channel(self.runtime_dir, REPLY_TIMEOUT)
        except (OSError, ValueError) as exc:
            self._failed_at = time.monotonic()
            self.error = f"no shared-memory pool at {self.runtime_dir}: {exc}"
            return False
        self.sock, self.region, self.ring, self.info, self.pid = sock, region, ring, info, os.getpid()
        self.inline_threshold = int(info.get("inline_threshold", INLINE_THRESHOLD))
        quiet_readonly_warning()
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
        self.region = None

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
        if self.region is not None:
            self.region.close()
            self.region = None
        self.available = False
        self._failed_at = -RETRY_ATTACH - 1.0

    def require(self) -> PageRegion:
        if not self.attach():
            raise ProtocolError(self.error or f"no shared-memory pool at {self.runtime_dir}")
        assert self.region is not None
        return self.region

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
        """Ask the daemon (lock held); descriptors that came with the answer are in ``self.fds``."""
        sock = self.sock
        if sock is None:
            raise ProtocolError(f"the pages channel to {self.runtime_dir} is closed")
        reader = C.FrameReader()
        fds: list[int] = []
        try:
            sock.sendall(C.frame(*parts))
            frames: list = []
            while not frames:
                data, more, _flags, _addr = socket.recv_fds(sock, 1 << 16, C.MAX_FDS)
                fds += more
                if not data:
                    raise ConnectionError("the daemon closed the pages channel")
                frames = reader.feed(data)
        except OSError as exc:
            _close_all(fds)
            self._lost_daemon()
            raise ProtocolError(f"pages channel to the daemon failed: {exc}") from exc
        reply = frames[0]
        if type(reply) is not dict:
            _close_all(fds)
            raise ProtocolError(f"malformed reply on the pages channel: {reply!r:.200}")
        self.fds = fds
        return reply

    # ------------------------------------------------------------------ slabs
    def _map_given(self, slabs: list, fds: list[int]) -> None:
        """Map our own slabs whose descriptors came with an allocation (read-write), then close them."""
        region = self.region
        assert region is not None
        try:
            for (slab, incarnation), fd in zip(slabs, fds, strict=True):
                region.map_slab(slab, fd, incarnation, writable=True)
        finally:
            _close_all(fds)

    def _ensure(self, start: int, pages: int, *, writable: bool) -> None:
        """Map the slabs of a block we were given, asking the daemon for those we lack (lock held).

        Raises:
            PagesSealed: a writable mapping of pages the daemon sealed (shared read-only already).
            ProtocolError: the daemon refused (we hold no page there) or went away.
        """
        region = self.region
        assert region is not None
        mapped = region.mapped_rw if writable else region.mapped_ro
        for slab in region.slab_range(start, pages):
            if mapped.get(slab) == region.slab_state(slab)[0]:
                continue
            reply = self._request(C.MAP, slab, writable)
            fds, self.fds = self.fds, []
            if "incarnation" not in reply or len(fds) != 1:
                _close_all(fds)
                if reply.get("error") == "sealed":
                    raise PagesSealed(reply.get("message", "pages shared read-only cannot be mapped writable"))
                raise ProtocolError(f"cannot map slab {slab}: {reply.get('message', reply)}")
            try:
                region.map_slab(slab, fds[0], reply["incarnation"], writable=writable)
            finally:
                os.close(fds[0])

    def writable_here(self, start: int, pages: int) -> bool:
        """Whether a block's pages can be mapped writable in this process (ours, or not sealed)."""
        region = self.region
        if region is None:
            return False
        for slab in region.slab_range(start, pages):
            incarnation, sealed = region.slab_state(slab)
            if sealed and region.mapped_rw.get(slab) != incarnation:
                return False
        return True

    # ------------------------------------------------------------------ leases
    def _lease(
        self, block: LocalBlock, offset: int, nbytes: int, *, readonly: bool = False, dtype: Any = U8
    ) -> np.ndarray:
        """A flat view of ``nbytes`` at ``offset`` in ``block`` (uint8, or ``dtype`` when its item
        size divides ``nbytes``); its death releases the lease."""
        region = self.region
        assert region is not None
        mm = region.rodata if readonly else region.data
        assert mm is not None
        base = np.frombuffer(
            mm, dtype=dtype, count=nbytes // dtype.itemsize, offset=block.start * region.page_size + offset
        )
        block.leases += 1
        # A plain weakref with a callback (cheaper than weakref.finalize); we keep the ref alive.
        ref = weakref.ref(base, self._ref_died)
        self._refs[id(ref)] = (ref, block.start, block.gen)
        return base
