"""One request's state inside the engine: its tokens, its blocks, where it stands, what it asked for."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

WAITING, RUNNING, FINISHED = "waiting", "running", "finished"


@dataclass
class SamplingParams:
    """What a request asked of the sampler (validated by ``engine.validate``)."""

    max_tokens: int = 64
    temperature: float = 0.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    ignore_eos: bool = False


@dataclass(eq=False)
class Sequence:
    """A request in the engine.

    ``tokens`` is the prompt followed by what was generated; ``computed`` counts the tokens whose
    keys and values are in the cache (the last sampled token is fed at the next step, so a
    decoding sequence has ``computed == len(tokens) - 1``). ``blocks`` is its block table.
    """

    id: int
    tokens: list[int]
    prompt_len: int
    params: SamplingParams
    level: int  # scheduling level now (0..7): sinks per quantum of tokens, climbs by aging
    base_level: int  # the level it asked for
    sink: Any = None  # where its events go (``engine.Events``)
    constraint: Any = None
    generator: Any = None  # torch.Generator for seeded sampling
    deadline: float | None = None
    state: str = WAITING
    computed: int = 0
    blocks: list[int] = field(default_factory=list)
    hashes: list[int] = field(default_factory=list)  # prefix-cache keys of its full blocks, in order
    swapped: Any = None  # a swap-store key while its blocks are swapped out
    since: float = field(default_factory=time.monotonic)  # when it entered its current queue
    arrived: float = field(default_factory=time.monotonic)
    first_token_at: float | None = None
    last_token_at: float | None = None
    quantum_used: int = 0  # tokens made since its last demotion or promotion
    run_tokens: int = 0  # tokens made since it was last admitted
    held_since: float | None = None  # when an urgent prefill began holding its prefill back
    text: str = ""  # the decoded output so far (stop strings trimmed at the end)
    sent: int = 0  # characters of ``text`` already sent
    preemptions: int = 0
    finish_reason: str | None = None

    @property
    def generated(self) -> int:
        return len(self.tokens) - self.prompt_len

    @property
    def out_ids(self) -> list[int]:
        return self.tokens[self.prompt_len :]

    @property
    def prefilling(self) -> bool:
        return self.computed < len(self.tokens) - 1
