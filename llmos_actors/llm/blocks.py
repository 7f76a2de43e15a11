"""The block manager: a free list of KV blocks, reference counts, and the prefix cache over them.

A block holds the keys and values of ``block_size`` consecutive tokens of one sequence. A full
block is also filed under a key made of its tokens and the key of the block before it (so a key
names a whole prefix); a later sequence whose prompt starts with the same tokens takes the
block instead of computing it again. A filed block nobody uses any more is not freed at once:
it waits in an LRU list and is reused (and unfiled) only when no plain free block is left, so
the prefix cache lives inside the budget and costs nothing while there is room.
"""

from __future__ import annotations

from collections import OrderedDict, deque


class OutOfBlocks(Exception):
    """No free or evictable block is left (the scheduler preempts before this can happen)."""


def block_key(parent: int, tokens: tuple[int, ...]) -> int:
    """The prefix-cache key of a full block: its tokens and everything before it."""
    return hash((parent, tokens))


class BlockManager:
    """Blocks ``0 .. num_blocks-1`` of the KV storage (see the module docstring)."""

    def __init__(self, num_blocks: int, *, prefix_cache: bool = True) -> None:
        if num_blocks < 1:
            raise ValueError("the KV budget holds no block")
        self.num_blocks = num_blocks
        self.prefix_cache = prefix_cache
        self.refs = [0] * num_blocks
        self.free: deque[int] = deque(range(num_blocks))
        self.key_of: dict[int, int] = {}  # block -> key
        self.block_of: dict[int, int] = {}  # key -> block
        self.evictable: OrderedDict[int, None] = OrderedDict()  # filed blocks with no user, LRU first
        self.hits = 0  # blocks served from the prefix cache
        self.evictions = 0

    # ------------------------------------------------------------------ counts
    def available(self) -> int:
        """Blocks an allocation can take (free, or cached but unused)."""
        return len(self.free) + len(self.evictable)

    def used(self) -> int:
        return self.num_blocks - self.available()

    def cached(self) -> int:
        return len(self.block_of)

    # ------------------------------------------------------------------ allocation
    def allocate(self) -> int:
        if self.free:
            block = self.free.popleft()
        elif self.evictable:
            block, _ = self.evictable.popitem(last=False)
            del self.block_of[self.key_of.pop(block)]
            self.evictions += 1
        else:
            raise OutOfBlocks("the KV budget is full")
        self.refs[block] = 1
        return block

    def release(self, block: int) -> None:
        refs = self.refs[block] - 1
        self.refs[block] = refs
        if refs:
            return
        if block in self.key_of:
            self.evictable[block] = None
        else:
            self.free.append(block)

    def release_all(self, blocks: list[int]) -> None:
        # Last block first: a sequence's tail goes before its shared prefix in the LRU order.
        for block in reversed(blocks):
            self.release(block)
        blocks.clear()

    def sole_owner_count(self, blocks: list[int]) -> int:
        """How many of ``blocks`` would become available if their one user released them."""
        return sum(1 for b in blocks if self.refs[b] == 1)

    # ------------------------------------------------------------------ prefix cache
    def lookup(self, key: int) -> int | None:
        """Take the block filed under ``key`` (one more user), or None."""
        block = self.block_of.get(key)
        if block is None:
            return None
        if self.refs[block] == 0:
            del self.evictable[block]
        self.refs[block] += 1
        self.hits += 1
        return block

    def file(self, block: int, key: int) -> None:
        """File a full block under its key (first comer wins; a block is filed once)."""
        if self.prefix_cache and key not in self.block_of and block not in self.key_of:
            self.block_of[key] = block
            self.key_of[block] = key
