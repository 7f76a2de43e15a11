"""Kernel sync objects for clients and actors: named mutexes, semaphores, conditions, barriers, events.

    with kernel.mutex("db"):                  # any process that names "db" waits its turn (FIFO)
        ...
    sem = kernel.semaphore("gpu-slots", 2)
    if sem.acquire(timeout=5): ...; sem.release()
    async with akernel.mutex("db"): ...       # the asyncio kernel's objects are awaited

The daemon holds the objects (``_kernel/syncobjects.py``); these handles only
name them. A holder is this process plus the current thread (or asyncio task):
a mutex is not reentrant, and only its holder may release it. If the process
dies, kill -9 included, the daemon releases what it held and wakes the waiters.

Each operation is written once (``MutexOps`` ...); ``Mutex`` blocks the calling
thread and ``AsyncMutex`` awaits, both derived from it (see ``_ops``).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from . import _validate
from ._ops import Awaiting, Blocking, Surface, operation
from .errors import CallTimeout

#: Seconds the client waits beyond a request's own timeout for the daemon's answer.
_SLACK = 10.0


class _Handle(Surface):
    """A named object plus the kernel that asks the daemon about it."""

    kind = ""

    def __init__(self, kernel: Any, name: str, params: dict | None = None, timeout: float | None = None) -> None:
        self._kernel = kernel
        self.name = _validate.sync_name(name)
        self._params = params or {}
        #: Default timeout of the ``with`` form (None: wait as long as it takes).
        self.timeout = _validate.timeout(timeout)

    def _who(self) -> dict:
        """The holder: this process and the current thread (blocking flavour) or asyncio task."""
        task = None if self._blocking else asyncio.current_task()
        owner = f"task-{id(task):x}" if task is not None else f"thread-{threading.get_ident()}"
        return {"pid": os.getpid(), "owner": owner}

    def _wait(self, method: str, *args: Any, timeout: float | None, **kwargs: Any) -> Any:
        """Steps of a request that may wait in the daemon: the daemon's timer decides; if the
        caller is interrupted (or the daemon went quiet), the wait is withdrawn."""
        core = self._kernel._core
        ticket = core.next_id()
        try:
            return (
                yield self._daemon(
                    method, *args, timeout=None if timeout is None else timeout + _SLACK, ticket=ticket, **kwargs
                )
            )
        except BaseException as exc:
            if not isinstance(exc, Exception) or isinstance(exc, CallTimeout):
                # Withdraw the wait, or undo a grant we never saw.
                try:
                    core.tell_daemon("sync_cancel", ticket)
                except Exception:
                    pass
            raise

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


class MutexOps(_Handle):
    """A named cross-process mutex (not reentrant; FIFO; released if its holder dies)."""

    kind = "mutex"

    @operation
    def acquire(self, blocking: bool = True, timeout: float | None = None) -> Any:
        """Wait for the mutex; True once held, False if ``timeout`` passed (or it is taken and not ``blocking``).

        Raises:
            DeadlockError: this holder already holds it, or waiting would close a cycle of waiters.
        """
        timeout = 0.0 if not blocking else _validate.timeout(timeout)
        who = self._who()
        return (
            yield from self._wait("sync_acquire", self.kind, self.name, self._params, who, timeout, timeout=timeout)
        )

    @operation
    def release(self) -> Any:
        """Release it.

        Raises:
            LockError: you do not hold it (or hold no unit of a semaphore).
        """
        yield self._daemon("sync_release", self.kind, self.name, self._who())

    @operation
    def _enter(self) -> Any:
        if not (yield from MutexOps.acquire(self, timeout=self.timeout)):
            raise CallTimeout(f"{self.kind} {self.name!r} not acquired within {self.timeout} s")
        return self

    @operation
    def _exit(self) -> Any:
        yield from MutexOps.release(self)


class SemaphoreOps(MutexOps):
    """A named counting semaphore of ``n`` units; each holder releases only units it holds."""

    kind = "semaphore"

    def __init__(self, kernel: Any, name: str, n: int, timeout: float | None = None) -> None:
        super().__init__(kernel, name, {"n": _validate.semaphore_count(n)}, timeout)
        self.n = n


class ConditionOps(MutexOps):
    """A named condition variable with its own lock: ``with cond: cond.wait_for(ready)``."""

    kind = "condition"

    @operation
    def wait(self, timeout: float | None = None) -> Any:
        """Release the lock, sleep until notified, re-acquire; False if ``timeout`` passed first.

        Raises:
            LockError: you do not hold the lock.
        """
        timeout = _validate.timeout(timeout)
        return (yield from self._wait("cond_wait", self.name, self._who(), timeout, timeout=timeout))

    @operation
    def wait_for(self, predicate: Callable[[], Any], timeout: float | None = None) -> Any:
        """Wait until ``predicate()`` is true (checked with the lock held); returns its last value."""
        deadline = None if timeout is None else time.monotonic() + timeout
        result = predicate()
        while not result:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                break
            yield from ConditionOps.wait(self, left)
            result = predicate()
        return result

    @operation
    def notify(self, n: int = 1) -> Any:
        """Wake up to ``n`` waiters (oldest first); you must hold the lock. Returns how many woke."""
        return (yield self._daemon("cond_notify", self.name, self._who(), _validate.notify_count(n)))

    @operation
    def notify_all(self) -> Any:
        """Wake every waiter; you must hold the lock. Returns how many woke."""
        return (yield self._daemon("cond_notify", self.name, self._who(), -1))


class BarrierOps(_Handle):
    """A named barrier: ``wait()`` returns once ``parties`` callers (any processes) have arrived."""

    kind = "barrier"

    def __init__(self, kernel: Any, name: str, parties: int) -> None:
        super().__init__(kernel, name, {"parties": _validate.barrier_parties(parties)})
        self.parties = parties

    @operation
    def wait(self, timeout: float | None = None) -> Any:
        """Arrive and wait; returns this caller's arrival index (0 .. parties-1).

        Raises:
            CallTimeout: not enough parties arrived within ``timeout`` (this caller leaves the barrier).
        """
        timeout = _validate.timeout(timeout)
        return (yield from self._wait("barrier_wait", self.name, self.parties, self._who(), timeout, timeout=timeout))


class EventOps(_Handle):
    """A named event flag: ``set()`` wakes every ``wait()``er."""

    kind = "event"

    @operation
    def set(self) -> Any:
        yield self._daemon("event_set", self.name)

    @operation
    def clear(self) -> Any:
        yield self._daemon("event_clear", self.name)

    @operation
    def is_set(self) -> Any:
        return (yield self._daemon("event_is_set", self.name))

    @operation
    def wait(self, timeout: float | None = None) -> Any:
        """True once set; False if ``timeout`` passed first."""
        timeout = _validate.timeout(timeout)
        return (yield from self._wait("event_wait", self.name, self._who(), timeout, timeout=timeout))


class Mutex(MutexOps, Blocking):
    __doc__ = MutexOps.__doc__


class Semaphore(SemaphoreOps, Blocking):
    __doc__ = SemaphoreOps.__doc__


class Condition(ConditionOps, Blocking):
    __doc__ = ConditionOps.__doc__


class Barrier(BarrierOps, Blocking):
    __doc__ = BarrierOps.__doc__


class Event(EventOps, Blocking):
    __doc__ = EventOps.__doc__


class AsyncMutex(MutexOps, Awaiting):
    """``Mutex`` for asyncio (the holder is the current task): ``async with akernel.mutex("m"):``."""


class AsyncSemaphore(SemaphoreOps, Awaiting):
    """``Semaphore`` for asyncio."""


class AsyncCondition(ConditionOps, Awaiting):
    """``Condition`` for asyncio (``predicate`` of ``wait_for`` stays a plain function)."""


class AsyncBarrier(BarrierOps, Awaiting):
    """``Barrier`` for asyncio."""


class AsyncEvent(EventOps, Awaiting):
    """``Event`` for asyncio."""


class SyncObjectOps(Surface):
    """Kernel methods: handles on named sync objects (created in the daemon on first use)."""

    def mutex(self, name: str, *, timeout: float | None = None) -> Any:
        """A named mutex; ``timeout`` bounds the ``with`` form (``CallTimeout`` when it passes)."""
        return self._twin(MutexOps)(self, name, timeout=timeout)

    def semaphore(self, name: str, n: int, *, timeout: float | None = None) -> Any:
        """A named semaphore of ``n`` >= 1 units (every user must name the same ``n``)."""
        return self._twin(SemaphoreOps)(self, name, n, timeout)

    def condition(self, name: str, *, timeout: float | None = None) -> Any:
        return self._twin(ConditionOps)(self, name, timeout=timeout)

    def barrier(self, name: str, parties: int) -> Any:
        """A named barrier for ``parties`` >= 1 callers."""
        return self._twin(BarrierOps)(self, name, parties)

    def event(self, name: str) -> Any:
        return self._twin(EventOps)(self, name)

    @operation
    def sync_objects(self) -> Any:
        """Every named sync object: kind, holder(s), waiters, counters."""
        return (yield self._daemon("sync_list"))

    @operation
    def sync_delete(self, name: str) -> Any:
        """Forget an idle object (nobody holds or waits on it); False if there was none."""
        return (yield self._daemon("sync_delete", _validate.sync_name(name)))
