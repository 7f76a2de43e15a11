"""One class per sync-object kind, owning its acquire, release and timeout rules.

These hold no sockets and no loop: they read time and arm timers on the
ledger's ``Clock``, and answer waiters through their futures, so their unit
tests run on a ``ManualClock``. Routing requests to them, creating them by
name and watching holder processes is the service's job (``syncobjects``).

Queues are ordered dicts of waiters: FIFO, and a waiter that times out or is
cancelled leaves from the middle in O(1).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any

from ..errors import CallTimeout, DeadlockError, LockError
from .sync_waits import Holder, Match, SyncLedger, SyncState, Waiter, pop_waiter, who


class MutexState(SyncState):
    """Not reentrant, FIFO; part of the wait-for graph."""

    kind = "mutex"

    def __init__(self, name: str, ledger: SyncLedger) -> None:
        super().__init__(name, ledger)
        self.holder: Holder | None = None
        self.holder_ident: bytes | None = None
        self.held_since = 0.0
        self.queue: OrderedDict[Waiter, None] = OrderedDict()

    def describe(self) -> dict:
        out = super().describe()
        now = self.ledger.clock.time()
        out.update(
            holder=who(self.holder) if self.holder else None,
            held_for=round(now - self.held_since, 3) if self.holder else None,
            waiters=len(self.queue),
        )
        return out

    def queues(self) -> tuple[OrderedDict[Waiter, None], ...]:
        return (self.queue,)

    def busy(self) -> bool:
        return self.holder is not None or super().busy()

    def try_acquire(self, holder: Holder, ident: bytes, ticket: Any, timeout: float | None) -> bool | None:
        """True if granted now, False if it would wait and ``timeout`` is 0, None if it must wait.

        Raises:
            DeadlockError: ``holder`` holds it already, or waiting would close a cycle.
        """
        if self.holder == holder:
            raise DeadlockError(
                f"{self.kind} {self.name!r} is already held by this holder ({who(holder)}); it is not reentrant"
            )
        if self.holder is None and not self.queue:
            self._take(holder, ident)
            self.ledger.remember_grant(ident, ticket, self, holder)
            return True
        self.contended += 1
        if timeout == 0:
            return False
        cycle = self.ledger.cycle_through(holder, self)
        if cycle is not None:
            self.ledger.record_deadlock(cycle, time.time())
            raise DeadlockError(f"acquiring {self.kind} {self.name!r} would deadlock: " + " -> ".join(cycle))
        return None

    def enqueue(self, waiter: Waiter, timeout: float | None) -> None:
        self.queue[waiter] = None
        self.ledger.waiting_on[waiter.holder] = self
        self.ledger.arm(waiter, timeout, self._timed_out)

    def _take(self, holder: Holder, ident: bytes) -> None:
        self.holder = holder
        self.holder_ident = ident
        self.held_since = self.ledger.clock.time()
        self.granted += 1

    def grant(self) -> None:
        """Hand a free lock to the oldest waiter still waiting."""
        while self.holder is None and self.queue:
            waiter, _ = self.queue.popitem(last=False)
            self.ledger.stop_waiting(waiter.holder, self)
            if waiter.fut.done():
                continue
            self._take(waiter.holder, waiter.ident)
            self.ledger.remember_grant(waiter.ident, waiter.ticket, self, waiter.holder)
            waiter.resolve(True if waiter.op == "acquire" else waiter.notified)

    def _timed_out(self, waiter: Waiter) -> None:
        waiter.timer = None
        if not pop_waiter(self.queue, waiter):
            return
        self.ledger.stop_waiting(waiter.holder, self)
        self.timeouts += 1
        waiter.resolve(False)
        self.grant()  # a waiter behind it may be grantable now (FIFO head left)

    def holds(self, holder: Holder) -> bool:
        return self.holder == holder

    def check_holder(self, holder: Holder, doing: str) -> None:
        if self.holder != holder:
            raise LockError(f"cannot {doing} {self.kind} {self.name!r}: you do not hold its lock")

    def release(self, holder: Holder) -> None:
        if self.holder is None:
            raise LockError(f"cannot release {self.kind} {self.name!r}: it is not held")
        if self.holder != holder:
            raise LockError(f"cannot release {self.kind} {self.name!r}: it is held by {who(self.holder)}, not by you")
        self.holder = None
        self.holder_ident = None
        self.grant()

    def remove(self, waiter: Waiter) -> None:
        super().remove(waiter)
        self.grant()

    def release_holders(self, match: Match, why: str) -> None:
        if self.holder is not None and match(self.holder, self.holder_ident):
            self.ledger.released_gone_holders += 1
            self.holder = None
            self.holder_ident = None
            self.grant()


class ConditionState(MutexState):
    """A mutex plus sleepers: a sleeper that wakes (notified or timed out) queues to re-acquire."""

    kind = "condition"

    def __init__(self, name: str, ledger: SyncLedger) -> None:
        super().__init__(name, ledger)
        self.sleepers: OrderedDict[Waiter, None] = OrderedDict()

    def describe(self) -> dict:
        out = super().describe()
        out["sleepers"] = len(self.sleepers)
        return out

    def queues(self) -> tuple[OrderedDict[Waiter, None], ...]:
        return (self.queue, self.sleepers)

    def sleep(self, waiter: Waiter, timeout: float | None) -> None:
        """The holder releases the lock and sleeps (``check_holder`` first)."""
        self.holder = None
        self.holder_ident = None
        self.sleepers[waiter] = None
        self.ledger.arm(waiter, timeout, self._sleep_timed_out)
        self.grant()

    def _sleep_timed_out(self, waiter: Waiter) -> None:
        waiter.timer = None
        if not pop_waiter(self.sleepers, waiter):
            return
        self.timeouts += 1
        self._requeue(waiter, notified=False)

    def _requeue(self, waiter: Waiter, *, notified: bool) -> None:
        """A sleeper wakes: it queues (FIFO) to re-acquire the lock before its wait returns."""
        if waiter.timer is not None:
            waiter.timer.cancel()
            waiter.timer = None
        waiter.op = "reacquire"
        waiter.notified = notified
        self.queue[waiter] = None
        self.ledger.waiting_on[waiter.holder] = self
        self.grant()

    def notify(self, holder: Holder, n: int) -> int:
        """Wake up to ``n`` sleepers (-1: all), oldest first; returns how many woke."""
        self.check_holder(holder, "notify")
        woken = 0
        while self.sleepers and (n == -1 or woken < n):
            waiter, _ = self.sleepers.popitem(last=False)
            if waiter.fut.done():
                continue
            self._requeue(waiter, notified=True)
            woken += 1
        return woken


class SemaphoreState(SyncState):
    """``n`` units; each holder releases only units it holds."""

    kind = "semaphore"

    def __init__(self, name: str, ledger: SyncLedger, n: int) -> None:
        super().__init__(name, ledger)
        self.n = n
        self.used = 0
        self.held: dict[Holder, int] = {}
        self.idents: dict[Holder, bytes] = {}
        self.queue: OrderedDict[Waiter, None] = OrderedDict()

    @property
    def free(self) -> int:
        return self.n - self.used

    def describe(self) -> dict:
        out = super().describe()
        out.update(n=self.n, free=self.free, holders=[who(h) for h in self.held], waiters=len(self.queue))
        return out

    def queues(self) -> tuple[OrderedDict[Waiter, None], ...]:
        return (self.queue,)

    def busy(self) -> bool:
        return bool(self.held) or super().busy()

    def try_acquire(self, holder: Holder, ident: bytes, ticket: Any, timeout: float | None) -> bool | None:
        if self.used < self.n and not self.queue:
            self._take(holder, ident)
            self.ledger.remember_grant(ident, ticket, self, holder)
            return True
        self.contended += 1
        return False if timeout == 0 else None

    def enqueue(self, waiter: Waiter, timeout: float | None) -> None:
        self.queue[waiter] = None
        self.ledger.arm(waiter, timeout, self._timed_out)

    def _take(self, holder: Holder, ident: bytes) -> None:
        self.held[holder] = self.held.get(holder, 0) + 1
        self.idents[holder] = ident
        self.used += 1
        self.granted += 1

    def grant(self) -> None:
        while self.queue and self.used < self.n:
            waiter, _ = self.queue.popitem(last=False)
            if waiter.fut.done():
                continue
            self._take(waiter.holder, waiter.ident)
            self.ledger.remember_grant(waiter.ident, waiter.ticket, self, waiter.holder)
            waiter.resolve(True)

    def _timed_out(self, waiter: Waiter) -> None:
        waiter.timer = None
        if not pop_waiter(self.queue, waiter):
            return
        self.timeouts += 1
        waiter.resolve(False)
        self.grant()

    def holds(self, holder: Holder) -> bool:
        return self.held.get(holder, 0) > 0

    def release(self, holder: Holder) -> None:
        count = self.held.get(holder, 0)
        if count <= 0:
            raise LockError(f"cannot release semaphore {self.name!r}: you hold none of its {self.n} units")
        if count == 1:
            del self.held[holder]
            self.idents.pop(holder, None)
        else:
            self.held[holder] = count - 1
        self.used -= 1
        self.grant()

    def remove(self, waiter: Waiter) -> None:
        super().remove(waiter)
        self.grant()

    def release_holders(self, match: Match, why: str) -> None:
        gone = [h for h in self.held if match(h, self.idents.get(h))]
        for h in gone:
            units = self.held.pop(h)
            self.used -= units
            self.ledger.released_gone_holders += units
            self.idents.pop(h, None)
        if gone:
            self.grant()


class BarrierState(SyncState):
    """Releases everyone once ``parties`` have arrived; a waiter that times out leaves."""

    kind = "barrier"

    def __init__(self, name: str, ledger: SyncLedger, parties: int) -> None:
        super().__init__(name, ledger)
        self.parties = parties
        self._arrived: OrderedDict[Waiter, None] = OrderedDict()
        self.generation = 0

    @property
    def arrived(self) -> list[Waiter]:
        return list(self._arrived)

    def describe(self) -> dict:
        out = super().describe()
        out.update(parties=self.parties, waiting=len(self._arrived), generation=self.generation)
        return out

    def queues(self) -> tuple[OrderedDict[Waiter, None], ...]:
        return (self._arrived,)

    def arrive(self, waiter: Waiter, timeout: float | None) -> None:
        self._arrived[waiter] = None
        if len(self._arrived) < self.parties:
            self.ledger.arm(waiter, timeout, self._timed_out)
            return
        arrived, self._arrived = list(self._arrived), OrderedDict()
        self.generation += 1
        self.granted += 1
        for index, w in enumerate(arrived):
            w.resolve(index)

    def _timed_out(self, waiter: Waiter) -> None:
        waiter.timer = None
        if not pop_waiter(self._arrived, waiter):
            return
        self.timeouts += 1
        waiter.resolve(exc=CallTimeout(f"barrier {self.name!r}: {len(self._arrived) + 1} of {self.parties} arrived"))


class EventState(SyncState):
    """A flag; ``set`` wakes every waiter."""

    kind = "event"

    def __init__(self, name: str, ledger: SyncLedger) -> None:
        super().__init__(name, ledger)
        self.flag = False
        self.waiters: OrderedDict[Waiter, None] = OrderedDict()

    def describe(self) -> dict:
        out = super().describe()
        out.update(set=self.flag, waiters=len(self.waiters))
        return out

    def queues(self) -> tuple[OrderedDict[Waiter, None], ...]:
        return (self.waiters,)

    def set(self) -> None:
        self.flag = True
        waiters, self.waiters = self.waiters, OrderedDict()
        for waiter in waiters:
            waiter.resolve(True)
        self.granted += len(waiters)

    def clear(self) -> None:
        self.flag = False

    def enqueue(self, waiter: Waiter, timeout: float | None) -> None:
        self.waiters[waiter] = None
        self.ledger.arm(waiter, timeout, self._timed_out)

    def _timed_out(self, waiter: Waiter) -> None:
        waiter.timer = None
        if not pop_waiter(self.waiters, waiter):
            return
        self.timeouts += 1
        waiter.resolve(False)


#: The class of each kind, for creating objects by name.
KIND_CLASSES: dict[str, type[SyncState]] = {
    cls.kind: cls for cls in (MutexState, ConditionState, SemaphoreState, BarrierState, EventState)
}
