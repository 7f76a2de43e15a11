"""Choosing the next token of each sampled row: constraint masks, greedy or temperature sampling."""

from __future__ import annotations

import torch

from .sequence import Sequence


@torch.inference_mode()  # the logits are inference tensors: masking them in place needs it
def sample(logits: torch.Tensor, seqs: list[Sequence]) -> list[int]:
    """One token per row of ``logits`` (``[S, vocab]``, float32), for ``seqs`` in the same order.

    Greedy (temperature 0) takes the argmax, as ``model.generate`` does; otherwise softmax at the
    temperature, drawn with the sequence's own generator (so a seeded request makes the same
    tokens whatever else shares its batch, and after a preemption). A constraint masks the
    tokens it forbids first.
    """
    constrained = False
    for row, seq in enumerate(seqs):
        if seq.constraint is not None:
            allowed = seq.constraint.allowed(logits.shape[-1])
            if allowed is not None:
                logits[row].masked_fill_(~allowed.to(logits.device)[: logits.shape[-1]], float("-inf"))
                constrained = True
    if not constrained and all(s.params.temperature <= 0 for s in seqs):
        return logits.argmax(dim=-1).tolist()
    out = []
    for row, seq in enumerate(seqs):
        temp = seq.params.temperature
        if temp <= 0:
            out.append(int(logits[row].argmax()))
            continue
        probs = torch.softmax(logits[row].to(torch.float32) / temp, dim=-1)
        probs = probs.cpu()
        out.append(int(torch.multinomial(probs, 1, generator=seq.generator)))
    return out


def new_generator(seed: int | None) -> torch.Generator:
    gen = torch.Generator()
    if seed is None:
        gen.seed()
    else:
        gen.manual_seed(seed)
    return gen
