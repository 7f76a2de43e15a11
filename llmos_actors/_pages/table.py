"""The daemon's page table: which runs of pages are in use, and who holds each one.

A *block* is a run of pages handed out by one allocation (a whole tensor, or a process's
arena chunk). It stays allocated while anything references it:

- a **hold** by a process (the process maps it: a tensor or array aliases it there);
- a **transfer**: a handle in a message not yet decoded. The sender registers it on its
  channel before the message leaves, and before it can release its own hold (one FIFO
  channel per process), so the pages stay put until the receiver takes it over;
- the **object store** (``kernel.put``).

Receivers *take* a transfer (adopt: it becomes their hold; or drop it, when they hold the
block already). A take can reach the daemon before the transfer it consumes (different
channels): then the receiver's hold is added at once and the late transfer is discarded.

Transfers that nobody takes (the receiver died, the message was dropped) expire after
``transfer_ttl``. If that frees a block, it is first *quarantined*: its generation is
cleared in the page table, so a new decoder refuses the handle, and a take that was
already on its way revives it; only after ``quarantine`` seconds are the pages reused.
A process that exits loses all its holds (the daemon watches every holder's pidfd).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .allocator import RunAllocator


@dataclass(eq=False)
class Block:
    start: int
    pages: int
    gen: int
    holds: dict[int, int] = field(default_factory=dict)  # pid -> holds
    tokens: int = 0  # transfers in flight
    store: int = 0  # object-store references
    last_used: float = 0.0
    quarantined: float | None = None

    @property
    def referenced(self) -> bool:
        return bool(self.holds or self.tokens or self.store)


@dataclass(eq=False)
class Transfer:
    block: Block
    fanout: bool
    expires: float


class PageTable:
    """Blocks, holders and transfers of one pool.

    Args:
        table: the shared page table, ``(n_pages, 2)`` uint64 (generation, run length).
        ttl: seconds a transfer waits to be taken.
        quarantine: seconds an expired block waits before its pages are reused.
        clock: monotonic seconds (injected in tests).
    """

    def __init__(
        self,
        table: Any,
        *,
        ttl: float,
        quarantine: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.table = table
        self.n_pages = len(table)
        self.allocator = RunAllocator(self.n_pages)
        self.ttl = ttl
        self.quarantine = quarantine
        self.clock = clock
        self.blocks: dict[int, Block] = {}
        self.by_pid: dict[int, set[int]] = {}
        self.transfers: dict[tuple[int, int], Transfer] = {}
        self.early: dict[tuple[int, int], float] = {}  # taken before they arrived -> expiry
        self.on_free: list[Callable[[Block], None]] = []
        self._next_gen = 1
        self.counters = {"stale_takes": 0, "expired_transfers": 0, "revived": 0, "freed_on_exit": 0}

    # ------------------------------------------------------------------ allocation
    def alloc(self, pid: int | None, pages: int, lo: int = 0, hi: int | None = None) -> Block | None:
        """A new block of ``pages`` within pages ``[lo, hi)``, held by ``pid`` (None: unheld, e.g. a
        restored object)."""
        start = self.allocator.alloc(pages, lo, hi)
        if start is None:
            return None
        gen = self._next_gen
        self._next_gen += 1
        block = Block(start, pages, gen, last_used=self.clock())
        self.blocks[start] = block
        # Run length first, generation last: a reader that sees the generation sees the length.
        self.table[start, 1] = pages
        self.table[start, 0] = gen
        if pid is not None:
            self.hold(block, pid)
        return block

    def find(self, start: Any, gen: Any) -> Block | None:
        """The live block ``start`` if its generation is ``gen``."""
        block = self.blocks.get(start) if type(start) is int else None
        if block is None or block.gen != gen or block.quarantined is not None:
            return None
        return block

    # ------------------------------------------------------------------ holds
    def hold(self, block: Block, pid: int, n: int = 1) -> None:
        block.holds[pid] = block.holds.get(pid, 0) + n
        block.last_used = self.clock()
        self.by_pid.setdefault(pid, set()).add(block.start)

    def release(self, pid: int, start: Any, gen: Any, n: Any = 1) -> bool:
        """``pid`` drops ``n`` holds on a block; frees it if nothing else references it."""
        block = self.blocks.get(start) if type(start) is int else None
        if block is None or block.gen != gen or type(n) is not int or n < 1:
            return False
        have = block.holds.get(pid, 0)
        if not have:
            return False
        if have > n:
            block.holds[pid] = have - n
        else:
            del block.holds[pid]
            starts = self.by_pid.get(pid)
            if starts is not None:
                starts.discard(start)
        self.maybe_free(block)
        return True

    # ------------------------------------------------------------------ transfers
    def send(self, pid: int, seq: Any, start: Any, gen: Any, fanout: Any = False) -> bool:
        """``pid`` put a handle to the block in a message (token ``(pid, seq)``)."""
        block = self.find(start, gen)
        if block is None or type(seq) is not int:
            return False
        key = (pid, seq)
        if not fanout and self.early.pop(key, None) is not None:
            return True  # its receiver was quicker than us: already taken
        self.transfers[key] = Transfer(block, bool(fanout), self.clock() + self.ttl)
        block.tokens += 1
        return True

    def take(self, pid: int, sender: Any, seq: Any, start: Any, gen: Any, *, adopt: bool) -> bool:
        """Receiver ``pid`` decoded handle ``(sender, seq)``: adopt it as its hold, or drop it."""
        key = (sender, seq)
        block = self.blocks.get(start) if type(start) is int else None
        if block is None or block.gen != gen:
            self.counters["stale_takes"] += 1
            self.early.pop(key, None)
            return False
        if block.quarantined is not None:
            # A receiver validated the handle before it expired: its pages come back.
            block.quarantined = None
            self.table[block.start, 0] = block.gen
            self.counters["revived"] += 1
        if adopt:
            self.hold(block, pid)
        xfer = self.transfers.get(key)
        if xfer is not None and xfer.block is block:
            if not xfer.fanout:
                del self.transfers[key]
                block.tokens -= 1
        elif xfer is None:
            self.early[key] = self.clock() + self.ttl
        block.last_used = self.clock()
        self.maybe_free(block)
        return True

    # ------------------------------------------------------------------ reclaim
    def exited(self, pid: int) -> int:
        """``pid`` is gone: drop all its holds. Returns how many blocks that freed."""
        freed = 0
        for start in self.by_pid.pop(pid, ()):
            block = self.blocks.get(start)
            if block is None or block.holds.pop(pid, None) is None:
                continue
            if self.maybe_free(block):
                freed += 1
        self.counters["freed_on_exit"] += freed
        return freed

    def expire(self) -> None:
        """Expire untaken transfers and finish quarantines (call about once a second)."""
        now = self.clock()
        for key, xfer in list(self.transfers.items()):
            if xfer.expires <= now:
                del self.transfers[key]
                self.counters["expired_transfers"] += 1
                block = xfer.block
                block.tokens -= 1
                if not block.referenced and block.quarantined is None and block.start in self.blocks:
                    block.quarantined = now
                    self.table[block.start, 0] = 0
        for key, expires in list(self.early.items()):
            if expires <= now:
                del self.early[key]
        for block in [b for b in self.blocks.values() if b.quarantined is not None]:
            since = block.quarantined
            assert since is not None
            if block.referenced:
                block.quarantined = None
                self.table[block.start, 0] = block.gen
            elif now - since >= self.quarantine:
                self._free(block)

    def maybe_free(self, block: Block) -> bool:
        if block.referenced or block.quarantined is not None or self.blocks.get(block.start) is not block:
            return False
        self._free(block)
        return True

    def _free(self, block: Block) -> None:
        del self.blocks[block.start]
        self.table[block.start, 0] = 0
        self.table[block.start, 1] = 0
        self.allocator.free(block.start, block.pages)
        for hook in self.on_free:
            hook(block)

    # ------------------------------------------------------------------ numbers
    def used_pages(self) -> int:
        return self.n_pages - self.allocator.free_pages

    def holders(self) -> int:
        return sum(1 for starts in self.by_pid.values() if starts)
