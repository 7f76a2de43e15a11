"""Actors for the metrics and dashboard tests."""

from __future__ import annotations

import llmos_actors as llmos


class Reporter(llmos.Actor):
    """An actor with the ``on_metrics`` hook (what an LLM device reports)."""

    def __init__(self) -> None:
        self.tokens = 0

    def generate(self, n: int) -> int:
        self.tokens += n
        return self.tokens

    def on_metrics(self) -> dict:
        return {
            "llm_tokens_total": self.tokens,
            "llm_batch_size": 3,
            "llm_kv_blocks_used": 5,
            "llm_kv_blocks_free": 15,
            "llm_ttft_seconds": {"le": [0.01, 0.1, 1.0], "counts": [1, 2, 2], "sum": 0.06, "count": 2},
            "Bad Key": 1,
            "queue_len": 2,
        }
