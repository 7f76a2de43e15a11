"""The paged KV cache: one storage tensor of fixed-size blocks, the block manager over it, and what
preemption does to a sequence's blocks (swap out to the swap store, or drop them for a recompute).

Storage layout: ``[2 (key, value), layers, blocks * block_size, kv_heads, head_dim]``; token ``i``
of a sequence lives in slot ``blocks[i // block_size] * block_size + i % block_size``. On the
CPU the storage is allocated by ``alloc`` (the device actor passes the kernel's page pool, so the
budget shows as the device's holding); on a GPU it is device memory and only swapped blocks go to
the pool.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from .blocks import BlockManager, block_key
from .sequence import Sequence
from .swap import SwapStore


def default_alloc(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    return torch.empty(shape, dtype=dtype)


class KVCache:
    """Blocks, their storage and the swap store; the scheduler's ``BlockBudget``.

    Args:
        num_blocks: blocks in the budget.
        block_size: tokens per block.
        layers, kv_heads, head_dim, dtype, device: the model's KV geometry.
        alloc: ``(shape, dtype) -> CPU tensor`` for the storage (CPU devices) and swapped blocks.
        swap_limit_bytes: swapped blocks kept in memory before the oldest go to disk.
        spill_dir: where they go (default: a temporary directory).
        prefix_cache: keep and reuse full blocks of earlier sequences.
    """

    def __init__(
        self,
        *,
        num_blocks: int,
        block_size: int,
        layers: int,
        kv_heads: int,
        head_dim: int,
        dtype: torch.dtype,
        device: torch.device,
        alloc: Callable[..., torch.Tensor] = default_alloc,
        swap_limit_bytes: int = 256 << 20,
        spill_dir: str | None = None,
        prefix_cache: bool = True,
    ) -> None:
        self.block_size = block_size
        self.manager = BlockManager(num_blocks, prefix_cache=prefix_cache)
        shape = (2, layers, num_blocks * block_size, kv_heads, head_dim)
        if device.type == "cpu":
            self.storage = alloc(shape, dtype)
        else:
            self.storage = torch.empty(shape, dtype=dtype, device=device)
        self.storage.zero_()  # touch every page now: no page fault in the middle of a step
        self.blocked = self.storage.view(2, layers, num_blocks, block_size, kv_heads, head_dim)
        self.block_bytes = 2 * layers * block_size * kv_heads * head_dim * self.storage.element_size()
        self.swap = SwapStore(swap_limit_bytes, alloc, spill_dir)
        self.swapped_blocks: dict[int, int] = {}  # sequence id -> blocks it had when swapped out
        self.swap_outs = 0
        self.swap_ins = 0
        self.recomputes = 0

    @property
    def nbytes(self) -> int:
        return self.storage.numel() * self.storage.element_size()

    # ------------------------------------------------------------------ BlockBudget
    def free_blocks(self) -> int:
        return self.manager.available()

    def blocks_for(self, seq: Sequence, new_tokens: int) -> int:
        have = self.swapped_blocks.get(seq.id, 0) if seq.swapped is not None else len(seq.blocks)
        need = math.ceil((seq.computed + new_tokens) / self.block_size)
        if seq.swapped is not None:
            return need if need > have else have
        return max(0, need - have)

    def blocks_freed(self, seq: Sequence) -> int:
        return self.manager.sole_owner_count(seq.blocks)

    # ------------------------------------------------------------------ slots
    def ensure(self, seq: Sequence, new_tokens: int) -> None:
        """Give ``seq`` the blocks to hold ``new_tokens`` more tokens."""
        need = math.ceil((seq.computed + new_tokens) / self.block_size)
        while len(seq.blocks) < need:
            seq.blocks.append(self.manager.allocate())

    def file_full_blocks(self, seq: Sequence) -> None:
        """File the sequence's newly completed blocks in the prefix cache."""
        if not self.manager.prefix_cache:
            return
        bs = self.block_size
        full = seq.computed // bs
        tokens = seq.tokens
        hashes = seq.hashes
        for i in range(len(hashes), full):
            key = block_key(hashes[-1] if hashes else 0, tuple(tokens[i * bs : (i + 1) * bs]))
            hashes.append(key)
            self.manager.file(seq.blocks[i], key)

    def match_prefix(self, seq: Sequence) -> int:
        """Take the cached blocks that start ``seq``'s tokens; returns the tokens they cover.

        The last token is always left to compute (its logits choose the next token).
        """
        if not self.manager.prefix_cache or seq.blocks:
            return 0
        bs = self.block_size
        tokens = seq.tokens
        parent = 0
        for i in range((len(tokens) - 1) // bs):
            key = block_key(parent, tuple(tokens[i * bs : (i + 1) * bs]))
            block = self.manager.lookup(key)
            if block is None:
                break
            seq.blocks.append(block)
            seq.hashes.append(key)
            parent = key
        seq.computed = len(seq.blocks) * bs
        return seq.computed

    # ------------------------------------------------------------------ preemption
    def swap_out(self, seq: Sequence) -> None:
        data = self.blocked[:, :, seq.blocks]
        self.swap.put(seq.id, data)
        self.swapped_blocks[seq.id] = len(seq.blocks)
        seq.swapped = seq.id
        self.manager.release_all(seq.blocks)
        seq.hashes.clear()
        self.swap_outs += 1

    def swap_in(self, seq: Sequence) -> None:
        data = self.swap.take(seq.id)
        count = self.swapped_blocks.pop(seq.id)
        blocks = [self.manager.allocate() for _ in range(count)]
        self.blocked[:, :, blocks] = data.to(self.storage.device)
        seq.blocks = blocks
        seq.swapped = None
        self.swap_ins += 1

    def drop(self, seq: Sequence) -> None:
        """Preempt for recompute: give the blocks back (filed ones stay in the prefix cache)."""
        self.manager.release_all(seq.blocks)
        seq.hashes.clear()
        seq.computed = 0
        self.recomputes += 1

    def forget(self, seq: Sequence) -> None:
        """A finished or cancelled sequence: free whatever it holds, wherever it is."""
        if seq.swapped is not None:
            self.swap.drop(seq.id)
            self.swapped_blocks.pop(seq.id, None)
            seq.swapped = None
        self.manager.release_all(seq.blocks)

    def numbers(self) -> dict[str, Any]:
        m = self.manager
        return {
            "kv_blocks_used": m.used(),
            "kv_blocks_free": m.available(),
            "kv_blocks_cached": m.cached(),
            "kv_block_tokens": self.block_size,
            "kv_bytes": self.nbytes,
            "prefix_hits": m.hits,
            "swapped": len(self.swap),
            "swap_outs": self.swap_outs,
            "swap_ins": self.swap_ins,
            "swap_spills": self.swap.spills,
            "recomputes": self.recomputes,
        }

    def close(self) -> None:
        self.swap.close()
