"""What the sync-object kinds share: a base class, a waiting request, the wait-for graph, grants.

Each holder waits on at most one mutex (or condition lock) at a time, so the
wait-for graph is a map holder -> the object it waits on, and a request that
would close a cycle is found by walking holder -> object -> its holder. A
``SyncLedger`` is the state one sync service keeps across all its objects; it
reads time from an injected ``Clock``.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .._clock import Clock, TimerHandle

log = logging.getLogger(__name__)

#: Granted tickets remembered, so a cancel that crosses its grant releases it.
GRANTS_KEPT = 4096
#: Deadlock cycles kept for ``llmos status``.
DEADLOCKS_KEPT = 20

Holder = tuple  # (pid, owner)


def who(holder: Holder) -> str:
    return f"pid {holder[0]} ({holder[1]})"


@dataclass(eq=False)
class Waiter:
    """One request waiting for its reply (hashed by identity: queues are ordered dicts of waiters).

    ``fut`` is anything future-like (``done``, ``set_result``, ``set_exception``):
    an asyncio future in the daemon, a ``concurrent.futures.Future`` in unit tests.
    """

    holder: Holder
    ident: bytes
    ticket: int
    fut: Any
    obj: Any
    op: str  # acquire | wait (condition sleeper) | reacquire | barrier | event
    timer: TimerHandle | None = None
    notified: bool = False
    since: float = 0.0  # when it began to wait (the ledger's clock), for the metrics

    def resolve(self, value: Any = None, exc: BaseException | None = None) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if not self.fut.done():
            if exc is not None:
                self.fut.set_exception(exc)
            else:
                self.fut.set_result(value)


class SyncLedger:
    """State shared by every sync object of one service: the clock, who waits on what, recent grants."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.waiting_on: dict[Holder, Any] = {}  # the wait-for graph (mutexes and conditions)
        self.grants: OrderedDict[tuple[bytes, int], tuple[Any, Holder]] = OrderedDict()
        self.deadlocks: deque[dict] = deque(maxlen=DEADLOCKS_KEPT)
        self.deadlocks_detected = 0
        self.released_gone_holders = 0

    def arm(self, waiter: Waiter, timeout: float | None, on_timeout: Any) -> None:
        if timeout is not None:
            waiter.timer = self.clock.call_later(timeout, on_timeout, waiter)

    def remember_grant(self, ident: bytes, ticket: Any, obj: Any, holder: Holder) -> None:
        if type(ticket) is not int:
            return
        self.grants[(ident, ticket)] = (obj, holder)
        if len(self.grants) > GRANTS_KEPT:
            self.grants.popitem(last=False)

    def stop_waiting(self, holder: Holder, obj: Any) -> None:
        if self.waiting_on.get(holder) is obj:
            del self.waiting_on[holder]

    # ------------------------------------------------------------------ deadlocks
    def cycle_through(self, holder: Holder, m: Any) -> list[str] | None:
        """The cycle ``holder`` waiting on mutex ``m`` would close, as readable steps, or None."""
        steps = [f"{who(holder)} wants {m.kind} {m.name!r}"]
        seen = {holder}
        current = m
        while current is not None and current.holder is not None:
            owner = current.holder
            steps.append(f"held by {who(owner)}")
            if owner == holder:
                return steps
            if owner in seen:
                return None
            seen.add(owner)
            current = self.waiting_on.get(owner)
            if current is not None:
                steps.append(f"which wants {current.kind} {current.name!r}")
        return None

    def record_deadlock(self, cycle: list[str], when: float) -> None:
        self.deadlocks_detected += 1
        self.deadlocks.append({"time": when, "cycle": cycle})
        log.warning("deadlock refused: %s", " -> ".join(cycle))

    def cycles(self) -> list[list[str]]:
        """Cycles in the wait-for graph right now (normally none: requests closing one are refused)."""
        found = []
        reported: set = set()
        for start in self.waiting_on:
            path = []
            node: Holder | None = start
            visited: set = set()
            while node is not None and node not in visited:
                visited.add(node)
                path.append(node)
                obj = self.waiting_on.get(node)
                node = obj.holder if obj is not None else None
            if node is not None and node in path:
                cycle = path[path.index(node) :]
                key = frozenset(cycle)
                if key not in reported:
                    reported.add(key)
                    found.append([who(h) for h in cycle])
        return found

    def waits(self, limit: int) -> list[dict]:
        out: list[dict] = []
        for holder, obj in self.waiting_on.items():
            if len(out) >= limit:
                break
            out.append(
                {
                    "waiter": who(holder),
                    "on": f"{obj.kind} {obj.name}",
                    "held_by": who(obj.holder) if obj.holder else None,
                }
            )
        return out


Match = Callable[[Holder, "bytes | None"], bool]


def pop_waiter(queue: OrderedDict[Waiter, None], waiter: Waiter) -> bool:
    """Take ``waiter`` out of ``queue``; False if it was not there (granted or gone already)."""
    if waiter in queue:
        del queue[waiter]
        return True
    return False


class SyncState:
    """What every kind has: a name, counters, and queues of waiters."""

    kind = ""

    def __init__(self, name: str, ledger: SyncLedger) -> None:
        self.name = name
        self.ledger = ledger
        self.created = time.time()
        self.granted = 0
        self.contended = 0
        self.timeouts = 0

    def describe(self) -> dict:
        return {
            "name": self.name,
            "kind": self.kind,
            "granted": self.granted,
            "contended": self.contended,
            "timeouts": self.timeouts,
        }

    def queues(self) -> tuple[OrderedDict[Waiter, None], ...]:
        return ()

    def busy(self) -> bool:
        return any(self.queues())

    def remove(self, waiter: Waiter) -> None:
        """Take a waiter out of whatever queue holds it (cancelled, or its holder is gone)."""
        for queue in self.queues():
            queue.pop(waiter, None)
        self.ledger.stop_waiting(waiter.holder, self)

    def release_holders(self, match: Match, why: str) -> None:
        """Release what the holders ``match`` selects hold (after their waits were removed)."""
