"""Short-term memory: the turns that make up an agent's context window, paged out LRU.

Each turn (a decision, an observation, something recalled) carries the time it was
last used. When the context would overflow its token budget, the least recently
used turns leave it for long-term memory, where ``recall`` can bring them back.
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

#: Characters per token assumed when the device's tokenizer is not asked (SmolLM2's BPE
#: averages ~4 on English and ~3 on JSON: the lower figure keeps the estimate on the safe side).
CHARS_PER_TOKEN = 3
#: Tokens each message costs beyond its text (chat-template markers).
MESSAGE_OVERHEAD = 4
#: Turns never evicted: the latest ones (what the next decision is about).
KEEP_LATEST = 2


def estimate_tokens(text: str) -> int:
    return len(text) // CHARS_PER_TOKEN + MESSAGE_OVERHEAD


_counter = itertools.count()


@dataclass
class Turn:
    """One message of the conversation after the goal."""

    role: str
    content: str
    tokens: int
    last_used: float = field(default_factory=time.monotonic)
    seq: int = field(default_factory=lambda: next(_counter))


class ShortTermMemory:
    """The turns in the context window, within ``budget`` tokens.

    Args:
        budget: tokens the turns may use (the model's context less the fixed part and the reply).
        evict: called with each turn that leaves the window (it goes to long-term memory).
        count: tokens of a text (an estimate unless a tokenizer is given).
    """

    def __init__(
        self, budget: int, evict: Callable[[Turn], None], count: Callable[[str], int] = estimate_tokens
    ) -> None:
        self.budget = budget
        self.turns: list[Turn] = []
        self._evict = evict
        self._count = count
        self.evicted = 0

    @property
    def tokens(self) -> int:
        return sum(t.tokens for t in self.turns)

    def add(self, role: str, content: str) -> Turn:
        turn = Turn(role, content, self._count(content))
        self.turns.append(turn)
        return turn

    def touch(self, words: str) -> int:
        """Mark turns that mention any of ``words`` as just used (a recall asked about them); returns how many."""
        wanted = {w.lower() for w in re.findall(r"\w+", words) if len(w) > 2}
        if not wanted:
            return 0
        now = time.monotonic()
        hit = 0
        for turn in self.turns:
            if wanted & {w.lower() for w in re.findall(r"\w+", turn.content)}:
                turn.last_used = now
                hit += 1
        return hit

    def fit(self, fixed_tokens: int = 0) -> list[Turn]:
        """Evict least recently used turns until they fit beside ``fixed_tokens``; returns the evicted."""
        gone: list[Turn] = []
        total = self.tokens + fixed_tokens
        while total > self.budget and len(self.turns) > KEEP_LATEST:
            candidates = self.turns[: len(self.turns) - KEEP_LATEST]
            victim = min(candidates, key=lambda t: (t.last_used, t.seq))
            self.turns.remove(victim)
            total -= victim.tokens
            self._evict(victim)
            gone.append(victim)
        self.evicted += len(gone)
        return gone

    def messages(self) -> list[dict]:
        """The turns as chat messages, in the order they happened; consecutive same-role turns are joined."""
        out: list[dict] = []
        for turn in sorted(self.turns, key=lambda t: t.seq):
            if out and out[-1]["role"] == turn.role:
                out[-1]["content"] += "\n" + turn.content
            else:
                out.append({"role": turn.role, "content": turn.content})
        return out

    def clear(self) -> None:
        self.turns.clear()
