"""Putting a device together: its settings, the KV budget in blocks, and the engine over a model."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import torch

from .engine import Engine
from .forward import PagedForward
from .kvcache import KVCache, default_alloc
from .scheduler import TokenScheduler


@dataclass(frozen=True)
class DeviceSettings:
    """The knobs of an LLM device (``LLM(model, **settings)``).

    Attributes:
        kv_budget_mb: memory for KV blocks (rounded down to whole blocks).
        kv_blocks: the budget in blocks instead (overrides ``kv_budget_mb``).
        block_size: tokens per KV block.
        max_batch: sequences per forward.
        max_step_tokens: tokens per forward (decode tokens + prefill chunks).
        aging: seconds a waiting sequence takes to climb one level.
        quantum: tokens a running sequence makes before it sinks one level.
        preempt: "auto" (cheaper of swap and recompute, by measured cost), "swap" or "recompute".
        prefix_cache: keep and reuse the KV blocks of earlier prompts.
        swap_limit_mb: swapped-out blocks kept in the page pool before the oldest go to disk.
        spill_dir: where they go (default: a temporary directory).
        fifo: arrival order, no priorities, no priority preemption (for comparison).
    """

    kv_budget_mb: float = 256.0
    kv_blocks: int | None = None
    block_size: int = 16
    max_batch: int = 32
    max_step_tokens: int = 128
    aging: float = 1.0
    quantum: int = 64
    preempt: str = "auto"
    prefix_cache: bool = True
    swap_limit_mb: float = 256.0
    spill_dir: str | None = None
    fifo: bool = False

    @classmethod
    def from_kwargs(cls, kwargs: dict[str, Any]) -> DeviceSettings:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise TypeError(f"unknown LLM device setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        settings = cls(**kwargs)
        if settings.block_size < 1 or settings.max_batch < 1 or settings.max_step_tokens < settings.max_batch:
            raise ValueError("block_size and max_batch must be >= 1, max_step_tokens >= max_batch")
        return settings


def kv_geometry(model: torch.nn.Module) -> tuple[int, int, int]:
    cfg = model.config
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    return cfg.num_hidden_layers, cfg.num_key_value_heads, head_dim


def build_engine(
    model: torch.nn.Module,
    tokenizer: Any,
    settings: DeviceSettings,
    *,
    on_events: Callable[[list], None],
    alloc: Callable[..., torch.Tensor] = default_alloc,
) -> Engine:
    """The engine for ``model`` with its KV budget allocated (by ``alloc`` on the CPU)."""
    forward = PagedForward(model)
    layers, kv_heads, head_dim = kv_geometry(model)
    dtype = next(model.parameters()).dtype
    device = next(model.parameters()).device
    block_bytes = 2 * layers * settings.block_size * kv_heads * head_dim * dtype.itemsize
    blocks = settings.kv_blocks or int(settings.kv_budget_mb * (1 << 20)) // block_bytes
    if blocks < 1:
        raise ValueError(f"the KV budget holds no block of {block_bytes} bytes")
    kv = KVCache(
        num_blocks=blocks,
        block_size=settings.block_size,
        layers=layers,
        kv_heads=kv_heads,
        head_dim=head_dim,
        dtype=dtype,
        device=device,
        alloc=alloc,
        swap_limit_bytes=int(settings.swap_limit_mb * (1 << 20)),
        spill_dir=settings.spill_dir,
        prefix_cache=settings.prefix_cache,
    )
    scheduler = TokenScheduler(
        max_batch=settings.max_batch,
        max_step_tokens=settings.max_step_tokens,
        aging=settings.aging,
        quantum=settings.quantum,
        fifo=settings.fifo,
    )
    eos = model.config.eos_token_id
    eos_ids = set(eos if isinstance(eos, list) else [] if eos is None else [eos])
    if tokenizer.eos_token_id is not None:
        eos_ids.add(tokenizer.eos_token_id)
    return Engine(
        forward,
        tokenizer,
        kv,
        scheduler,
        eos_ids=eos_ids,
        max_context=int(model.config.max_position_embeddings),
        on_events=on_events,
        preempt=settings.preempt,
    )
