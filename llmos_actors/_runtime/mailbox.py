"""The actor's mailbox: a multi-level feedback queue of requests waiting for their turn.

Eight levels, one per priority (0 lowest .. 7 highest); each level is FIFO, so
messages of equal priority from one sender keep their order. ``pop`` takes the
head of the level whose head has the highest *effective* priority:

    effective = level + (seconds the head has waited) / aging

so a waiting message climbs one level per ``aging`` seconds and nothing starves.
A sender with more than ``flood_share`` of the mailbox queued (counted once the
mailbox holds half that many: a quiet mailbox skips the bookkeeping) is demoted: its new
messages go one level down until its demoted backlog has drained (which keeps its
equal-priority messages in order). Long streams are demoted by the executor after
each full quantum they use (the feedback in MLFQ), and climb back by aging.

Bounded: at ``size`` entries the actor stops reading its socket (policies
``block`` and ``raise``: the transport's queues fill and senders feel it) or
drops what arrives (policy ``drop``, counted).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

LEVELS = 8
DEFAULT_PRIORITY = 4
#: Seconds a waiting message needs to climb one level (a level-0 message reaches the top in 7 s).
DEFAULT_AGING = 1.0
#: A sender holding more than this share of the mailbox gets its new messages demoted.
DEFAULT_FLOOD_SHARE = 0.25


class Mailbox:
    """Bounded multi-level feedback queue (see the module docstring).

    Args:
        size: entries held before the actor stops reading (or drops).
        default_priority: the level of entries that carry no priority.
        aging: seconds per level of promotion while waiting (0 disables aging).
        flood_share: fraction of ``size`` one sender may queue before demotion (0 disables).
        clock: monotonic seconds (injected by tests).
    """

    def __init__(
        self,
        size: int,
        *,
        default_priority: int = DEFAULT_PRIORITY,
        aging: float = DEFAULT_AGING,
        flood_share: float = DEFAULT_FLOOD_SHARE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.size = size
        self.default_priority = default_priority
        self.aging = aging
        self.flood_limit = max(1, int(size * flood_share)) if flood_share > 0 else 0
        # Below this many queued entries, senders are not counted (half the flood limit).
        self._track_from = self.flood_limit // 2
        self.clock = clock
        self._levels: list[deque] = [deque() for _ in range(LEVELS)]
        self._len = 0
        self._nonempty = 0  # bit i set: level i holds entries
        self._senders: dict[bytes, int] = {}  # queued entries per sender
        self._demoted: dict[bytes, int] = {}  # queued demoted entries per sender
        self.demotions = 0
        self.promotions = 0
        self._next: int | None = None  # the level peek chose, for the pop that follows
        #: When the entry ``pop`` last returned was queued (its queue wait, for the metrics).
        self.enqueued_at = 0.0

    def __len__(self) -> int:
        return self._len

    @property
    def full(self) -> bool:
        return self._len >= self.size

    @property
    def low(self) -> bool:
        """Room enough to start reading again (hysteresis avoids pause/resume churn)."""
        return self._len <= self.size // 2

    # ------------------------------------------------------------------ in
    def put(self, entry: Any, prio: int | None = None, sender: bytes | None = None) -> int:
        """Queue ``entry`` at its priority (demoted if its sender floods); returns the level used."""
        level = self.default_priority if prio is None else (0 if prio < 0 else LEVELS - 1 if prio >= LEVELS else prio)
        demoted = False
        if sender is not None and self._len < self._track_from and not self._senders:
            sender = None  # a quiet mailbox: no one can be flooding it, skip the bookkeeping
        if sender is not None and self.flood_limit:
            queued = self._senders.get(sender, 0)
            if level > 0 and (queued >= self.flood_limit or self._demoted.get(sender)):
                level -= 1
                demoted = True
                self._demoted[sender] = self._demoted.get(sender, 0) + 1
                self.demotions += 1
            self._senders[sender] = queued + 1
        self._levels[level].append((self.clock(), entry, sender, demoted))
        self._nonempty |= 1 << level
        self._len += 1
        self._next = None
        return level

    # ------------------------------------------------------------------ out
    def _best(self) -> int:
        """The level whose head should go next."""
        mask = self._nonempty
        top = mask.bit_length() - 1
        aging = self.aging
        if aging <= 0 or mask == 1 << top:
            return top
        now = self.clock()
        levels = self._levels
        best, best_score = top, top + (now - levels[top][0][0]) / aging
        level = top - 1
        while level >= 0:
            if mask >> level & 1:
                score = level + (now - levels[level][0][0]) / aging
                if score > best_score:
                    best, best_score = level, score
            level -= 1
        if best != top:
            self.promotions += 1
        return best

    def peek(self) -> Any:
        """The entry ``pop`` would return next (the very same one, whatever the clock says then)."""
        level = self._next = self._best()
        return self._levels[level][0][1]

    def pop(self) -> Any:
        level = self._next
        if level is None:
            level = self._best()
        self._next = None
        queue = self._levels[level]
        self.enqueued_at, entry, sender, demoted = queue.popleft()
        if not queue:
            self._nonempty &= ~(1 << level)
        self._len -= 1
        if sender is not None and self.flood_limit:
            left = self._senders[sender] - 1
            if left:
                self._senders[sender] = left
            else:
                del self._senders[sender]
            if demoted:
                d = self._demoted[sender] - 1
                if d:
                    self._demoted[sender] = d
                else:
                    del self._demoted[sender]
        return entry

    def remove(self, predicate: Callable[[Any], bool]) -> list:
        """Take out every entry matching ``predicate`` (cancelled calls, shutdown)."""
        self._next = None
        removed = []
        for level, queue in enumerate(self._levels):
            if not queue:
                continue
            kept: deque = deque()
            for item in queue:
                if predicate(item[1]):
                    removed.append(item[1])
                    self._forget(item)
                else:
                    kept.append(item)
            self._levels[level] = kept
            if not kept:
                self._nonempty &= ~(1 << level)
        self._len -= len(removed)
        return removed

    def _forget(self, item: tuple) -> None:
        _, _, sender, demoted = item
        if sender is None or not self.flood_limit:
            return
        left = self._senders.get(sender, 1) - 1
        if left > 0:
            self._senders[sender] = left
        else:
            self._senders.pop(sender, None)
        if demoted:
            d = self._demoted.get(sender, 1) - 1
            if d > 0:
                self._demoted[sender] = d
            else:
                self._demoted.pop(sender, None)

    def snapshot(self) -> dict:
        """Queue depth per level (for ``llmos ps`` / ``llmos top``)."""
        return {
            "queued": self._len,
            "levels": [len(q) for q in self._levels],
            "demotions": self.demotions,
            "promotions": self.promotions,
        }


class FifoMailbox(Mailbox):
    """One level, arrival order: what a plain actor system does (for comparison and benchmarks)."""

    def put(self, entry: Any, prio: int | None = None, sender: bytes | None = None) -> int:
        return super().put(entry, self.default_priority, None)

    def _best(self) -> int:
        return self.default_priority
