"""One batched forward over a paged KV cache, written over a Hugging Face Llama-family model's own
modules and weights (embedding, norms, projections, MLP, rotary tables, LM head).

transformers' attention reads a contiguous per-sequence cache; ours is scattered in blocks, so the
attention step is ours: the tokens of every sequence in the step travel packed (``[tokens,
hidden]``) through the projections and the MLP, their keys and values are written into their
cache slots, and attention runs once per layer for the whole batch with SDPA over each sequence's
gathered slots (padded to the longest, masked causally). Only the rows whose next token is
sampled go through the LM head.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

#: Model types whose decoder layers have the Llama shape (pre-norm, q/k/v/o projections, rotary
#: embedding, gated MLP); others are refused at load with this list in the message.
SUPPORTED = ("llama", "mistral", "qwen2")


@dataclass
class StepInputs:
    """The tensors of one step (built by ``build_inputs``)."""

    tokens: torch.Tensor  # [T] token ids, packed sequence after sequence
    positions: torch.Tensor  # [T]
    slots: torch.Tensor  # [T] cache slot each token's key/value goes to
    q_index: torch.Tensor  # [B * Qmax] packed row of each padded query (0 for padding)
    unpad: torch.Tensor  # [T] padded position of each packed row
    k_slots: torch.Tensor  # [B, Kmax] cache slots of each sequence's context (0 for padding)
    mask: torch.Tensor  # [B, 1, Qmax, Kmax] which keys each query sees
    sample_rows: torch.Tensor  # [S] packed rows whose logits are wanted
    batch: int
    qmax: int


def build_inputs(
    entries: list[tuple[list[int], int, list[int], bool]], block_size: int, device: torch.device
) -> StepInputs:
    """Tensors for one step.

    Args:
        entries: per sequence ``(tokens to feed, tokens already cached, block table, sample?)``.
    """
    tokens: list[int] = []
    positions: list[int] = []
    slots: list[int] = []
    q_index: list[int] = []
    unpad: list[int] = []
    sample_rows: list[int] = []
    starts: list[int] = []
    ctxs: list[int] = []
    qmax = max(len(e[0]) for e in entries)
    kmax = max(e[1] + len(e[0]) for e in entries)
    k_slots: list[int] = []
    for b, (feed, cached, table, sample) in enumerate(entries):
        n = len(feed)
        row0 = len(tokens)
        tokens.extend(feed)
        positions.extend(range(cached, cached + n))
        ctx = cached + n
        all_slots = [blk * block_size + off for blk in table for off in range(block_size)][:ctx]
        slots.extend(all_slots[cached:ctx])
        q_index.extend(range(row0, row0 + n))
        q_index.extend([0] * (qmax - n))
        unpad.extend(range(b * qmax, b * qmax + n))
        if sample:
            sample_rows.append(row0 + n - 1)
        starts.append(cached)
        ctxs.append(ctx)
        k_slots.extend(all_slots)
        k_slots.extend([0] * (kmax - ctx))
    B = len(entries)
    start_t = torch.tensor(starts, device=device)
    ctx_t = torch.tensor(ctxs, device=device)
    kpos = torch.arange(kmax, device=device).view(1, 1, kmax)
    qpos = start_t.view(B, 1, 1) + torch.arange(qmax, device=device).view(1, qmax, 1)
    mask = (kpos <= qpos) & (kpos < ctx_t.view(B, 1, 1))

    def t(values: list[int]) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.long, device=device)

    return StepInputs(
        tokens=t(tokens),
        positions=t(positions),
        slots=t(slots),
        q_index=t(q_index),
        unpad=t(unpad),
        k_slots=t(k_slots).view(B, kmax),
        mask=mask.unsqueeze(1),
        sample_rows=t(sample_rows),
        batch=B,
        qmax=qmax,
    )


class PagedForward:
    """The model's forward over the paged cache (see the module docstring).

    Raises:
        ValueError: the model is not of a supported (Llama-shaped) type.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        cfg = model.config
        if getattr(cfg, "model_type", None) not in SUPPORTED:
            raise ValueError(
                f"model type {getattr(cfg, 'model_type', None)!r} is not supported by the paged forward "
                f"(supported: {', '.join(SUPPORTED)})"
            )
        self.model = model
        inner = model.model
        self.embed = inner.embed_tokens
        self.layers = list(inner.layers)
        self.norm = inner.norm
        self.rotary = inner.rotary_emb
        self.lm_head = model.lm_head
        self.heads = cfg.num_attention_heads
        self.kv_heads = cfg.num_key_value_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.scale = self.head_dim**-0.5

    @torch.inference_mode()
    def __call__(
        self, x_in: StepInputs, storage: torch.Tensor, abort: Callable[[], bool] | None = None
    ) -> torch.Tensor | None:
        """Logits ``[S, vocab]`` for the rows in ``x_in.sample_rows``; writes the step's keys and
        values into ``storage`` (``[2, layers, slots, kv_heads, head_dim]``).

        ``abort`` is asked before each layer; when it says so the step is abandoned (None): the
        keys and values written so far are only for tokens not yet counted as cached, so feeding
        the same tokens again later writes them over."""
        H, Hkv, D = self.heads, self.kv_heads, self.head_dim
        B, Q = x_in.batch, x_in.qmax
        x = self.embed(x_in.tokens)  # [T, hidden]
        T = x.shape[0]
        cos, sin = self.rotary(x, x_in.positions.unsqueeze(0))
        cos, sin = cos[0].unsqueeze(1), sin[0].unsqueeze(1)  # [T, 1, D]
        half = D // 2
        slots, k_slots, q_index, unpad, mask = x_in.slots, x_in.k_slots, x_in.q_index, x_in.unpad, x_in.mask
        for i, layer in enumerate(self.layers):
            if abort is not None and abort():
                return None
            attn = layer.self_attn
            h = layer.input_layernorm(x)
            q = attn.q_proj(h).view(T, H, D)
            k = attn.k_proj(h).view(T, Hkv, D)
            v = attn.v_proj(h).view(T, Hkv, D)
            q = q * cos + torch.cat((-q[..., half:], q[..., :half]), dim=-1) * sin
            k = k * cos + torch.cat((-k[..., half:], k[..., :half]), dim=-1) * sin
            k_cache = storage[0, i]
            v_cache = storage[1, i]
            k_cache.index_copy_(0, slots, k)
            v_cache.index_copy_(0, slots, v)
            keys = k_cache[k_slots].transpose(1, 2)  # [B, Hkv, K, D]
            values = v_cache[k_slots].transpose(1, 2)
            # [B, H, Q, D]; decode only (Q == 1): one row per sequence, packed order is batch order
            queries = (q if Q == 1 else q[q_index]).view(B, Q, H, D).transpose(1, 2)
            out = F.scaled_dot_product_attention(
                queries, keys, values, attn_mask=mask, scale=self.scale, enable_gqa=Hkv != H
            )
            out = out.transpose(1, 2).reshape(B * Q, H * D)
            if Q > 1:
                out = out[unpad]  # back to packed rows
            x = x + attn.o_proj(out)
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        x = self.norm(x[x_in.sample_rows])
        return self.lm_head(x).float()
