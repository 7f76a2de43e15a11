"""A process's side of the pages: allocating, sending, receiving and storing through its mapping.

One ``PageClient`` per process and daemon (``client_for(runtime_dir)``), shared by every
kernel handle, actor runtime and codec of that process: the pool is mapped once per
process, and everything the process tells the page table goes down one FIFO channel
(``mapping``).

Arena: allocations up to a quarter of a chunk are carved (bump pointer) from a chunk the
daemon grants in one round trip, so small tensors cost no daemon round trip. A chunk
none of whose allocations was ever sent is reset when they all die; once one was sent,
its used part is never reused here (a receiver may still map it) and the chunk is
released when its last local allocation dies and it is full.
"""

from __future__ import annotations

import bisect
import gc
import secrets
import time
from typing import Any

import numpy as np

from ..errors import LimitExceeded, ObjectLost, PagesExhausted, PermissionDenied, ProtocolError
from . import channel as C
from .mapping import U8, LocalBlock, PagesMapping

#: Arena allocations are aligned like malloc's large blocks (vector loads, torch kernels).
ALIGN = 64


class PageClient(PagesMapping):
    """This process's attachment to one daemon's pages (see the module docstring)."""

    def alloc(self, nbytes: int, *, timeout: float | None = None, unsealed: bool = False) -> np.ndarray:
        """``nbytes`` of pool memory as a writable uint8 lease (shared mapping).

        ``unsealed``: for a copy to be moved to a receiver (large ones avoid sealed slabs).

        Raises:
            PagesExhausted: no room after spilling and waiting ``alloc_timeout`` (or ``timeout``).
        """
        for attempt in (1, 2):
            self.require()
            try:
                return self._alloc(nbytes, timeout, unsealed)
            except ProtocolError:
                if attempt == 2 or self.available:
                    raise  # a daemon that restarted gets one more try, with its new pool
        raise AssertionError("unreachable")

    def _alloc(self, nbytes: int, timeout: float | None, unsealed: bool = False) -> np.ndarray:
        chunk_size = int(self.info.get("chunk_size", 4 << 20))
        if nbytes <= chunk_size // 4:
            return self._arena_alloc(max(nbytes, 1), chunk_size, timeout)[:nbytes]
        self.lock.acquire()
        try:
            block = self._new_block(nbytes, timeout, arena=False, unsealed=unsealed)
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

    def _new_block(self, nbytes: int, timeout: float | None, *, arena: bool, unsealed: bool = False) -> LocalBlock:
        """Ask the daemon for a block (lock held); waits for room, releasing the lock meanwhile."""
        wait = float(self.info.get("alloc_timeout", 10.0)) if timeout is None else timeout
        deadline = time.monotonic() + wait
        delay = 0.001
        collected = False
        while True:
            reply = self._request(C.ALLOC, nbytes, True) if unsealed else self._request(C.ALLOC, nbytes)
            fds, self.fds = self.fds, []
            if "start" in reply:
                self._map_given(reply.get("slabs") or [], fds)
                self._ensure(reply["start"], reply["pages"], writable=True)  # mapped already: no request
                block = LocalBlock(reply["start"], reply["pages"], reply["gen"], arena=arena)
                self._register(block)
                return block
            if reply.get("error") != "full" or time.monotonic() >= deadline:
                raise PagesExhausted(
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
        region = self.region
        if region is None:
            return None
        if region.base <= low and low + span <= region.base + region.data_bytes:
            rel, readonly = low - region.base, False
        elif region.robase <= low and low + span <= region.robase + region.data_bytes:
            rel, readonly = low - region.robase, True
        else:
            return None
        ps = region.page_size
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
        """Register a handle to ``block`` that is about to leave in a message; returns its token.

        The token's ``seq`` is random, not a counter: only a process that was sent the
        handle can name the transfer, so no stranger can take (or spoil) it by guessing.
        """
        seq = secrets.randbits(62)
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
        dtype: Any = U8,
    ) -> np.ndarray:
        """Map a received handle (already validated) as a lease; tells the daemon we took it."""
        self.lock.acquire()
        try:
            if self.region is None:  # detached meanwhile (every kernel closed, or the daemon went away)
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
            try:
                self._ensure(start, pages, writable=not readonly)
            except ProtocolError:
                if adopt:
                    self._drop(block)  # our hold goes back: we could not map it
                raise
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
        if reply.get("error") == "limit":
            raise LimitExceeded(reply.get("message", "put refused: a [limits] quota was reached"))
        if "oid" not in reply:
            raise ProtocolError(f"put failed: {reply.get('message', reply)}")
        return reply["oid"]

    def get(self, oid: str, timeout: float | None = None) -> tuple[np.ndarray, list]:
        """Map a stored object (read-only); returns its lease and metadata."""
        region = self.require()
        wait = float(self.info.get("alloc_timeout", 10.0)) if timeout is None else timeout
        deadline = time.monotonic() + wait
        while True:
            self.lock.acquire()
            try:
                reply = self._request(C.GET, oid)
                if "start" in reply:
                    start, pages, gen, meta = reply["start"], reply["pages"], reply["gen"], reply["meta"]
                    try:
                        self._ensure(start, pages, writable=False)
                    except ProtocolError:
                        self._note(C.RELEASE, start, gen, 1)  # the hold the daemon gave us
                        raise
                    block = self.blocks.get(start)
                    if block is None or block.gen != gen:
                        block = LocalBlock(start, pages, gen, holds=1)
                        self._register(block)
                    else:
                        block.holds += 1
                    base_off, span = meta[4], meta[5]
                    if base_off + span > pages * region.page_size:
                        raise ProtocolError("stored object lies outside its pages")
                    return self._lease(block, base_off, span, readonly=True), meta
            finally:
                self._unlock()
            if reply.get("error") == "missing":
                raise ObjectLost(reply.get("message", f"no object {oid!r}"))
            if reply.get("error") != "full" or time.monotonic() >= deadline:
                raise PagesExhausted(f"cannot restore object {oid}: {reply.get('message', reply)}")
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
        if reply.get("error") == "denied":
            raise PermissionDenied(reply.get("message", f"object {oid!r} is not yours to free"))

    def numbers(self) -> dict[str, int]:
        """This process's side: blocks mapped and live leases (for tests and debugging)."""
        self.lock.acquire()
        try:
            return {"blocks": len(self.blocks), "leases": sum(b.leases for b in self.blocks.values())}
        finally:
            self._unlock()
