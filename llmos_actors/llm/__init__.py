"""The LLM device: an actor that serves one model to every agent process.

loading.py    finding and loading the model (HF directory, .gguf, the default SmolLM2)
verify.py     checking a model's files at spawn (truncated, corrupt, incomplete)
forward.py    the batched forward over the paged KV cache (the model's own modules and weights)
blocks.py     the block manager: free list, reference counts, the prefix cache
kvcache.py    the KV storage in blocks, swap-out/swap-in and recompute of preempted sequences
swap.py       swapped blocks: pool pages outside the budget, then disk (LRU)
scheduler.py  the token-level scheduler (MLFQ with aging, priority and memory preemption)
sampling.py   greedy and temperature sampling, constraint masks
engine.py     the engine loop: one batched step at a time
requests.py   the request options (defined once) and their validation, sequences
build.py      device settings and putting the engine together
metrics.py    counters and histograms
device.py     the ``LLM`` actor
"""

from __future__ import annotations

from .device import LLM

__all__ = ["LLM"]
