"""The actor's mailbox: requests read from the socket, waiting for their turn.

Bounded: when it holds ``size`` entries the actor stops reading its socket
(policies ``block`` and ``raise``: the transport's queues fill and senders feel
it) or drops what arrives (policy ``drop``, counted).
"""

from __future__ import annotations

from collections import deque
from typing import Any


class Mailbox:
    """First in, first out, bounded.

    Entries are requests (or resumable work such as a stream's next step); ``len``
    counts them all. Subclasses order entries differently (priorities).
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._q: deque = deque()

    def __len__(self) -> int:
        return len(self._q)

    def put(self, entry: Any, prio: int | None = None) -> None:
        self._q.append(entry)

    def peek(self) -> Any:
        """The entry ``pop`` would return next."""
        return self._q[0]

    def pop(self) -> Any:
        return self._q.popleft()

    @property
    def full(self) -> bool:
        return len(self._q) >= self.size

    @property
    def low(self) -> bool:
        """Room enough to start reading again (hysteresis avoids pause/resume churn)."""
        return len(self._q) <= self.size // 2

    def remove(self, predicate) -> list:
        """Take out every entry matching ``predicate`` (cancelled calls)."""
        kept: deque = deque()
        removed: list = []
        for entry in self._q:
            (removed if predicate(entry) else kept).append(entry)
        self._q = kept
        return removed

    def snapshot(self) -> dict:
        return {"queued": len(self._q)}
