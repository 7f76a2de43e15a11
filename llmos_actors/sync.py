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
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from .errors import CallTimeout

#: Seconds the client waits beyond a request's own timeout for the daemon's answer.
_SLACK = 10.0


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not 1 <= len(name) <= 200:
        raise ValueError(f"a sync object name must be a string of 1 to 200 characters, not {name!r}")
    return name


def _check_timeout(timeout: Any) -> float | None:
    if timeout is None:
        return None
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout < 0:
        raise ValueError(f"timeout must be None or a number of seconds >= 0, not {timeout!r}")
    return float(timeout)


def _positive(value: Any, what: str) -> int:
    if type(value) is not int or value < 1:
        raise ValueError(f"{what} must be an int >= 1, not {value!r}")
    return value


def _who_sync() -> dict:
    return {"pid": os.getpid(), "owner": f"thread-{threading.get_ident()}"}


def _who_async() -> dict:
    task = asyncio.current_task()
    owner = f"task-{id(task):x}" if task is not None else f"thread-{threading.get_ident()}"
    return {"pid": os.getpid(), "owner": owner}


class _Handle:
    """A named object plus the kernel that asks the daemon about it (synchronous flavour)."""

    kind = ""

    def __init__(self, kernel: Any, name: str, params: dict | None = None, timeout: float | None = None) -> None:
        self._kernel = kernel
        self.name = _check_name(name)
        self._params = params or {}
        #: Default timeout of the ``with`` form (None: wait as long as it takes).
        self.timeout = _check_timeout(timeout)

    def _wait(self, method: str, *args: Any, timeout: float | None, **kwargs: Any) -> Any:
        """A request that may wait in the daemon: the daemon's timer decides; interrupted, it is cancelled."""
        core = self._kernel._core
        ticket = core.next_id()
        try:
            return self._kernel._control(
                method, *args, timeout=None if timeout is None else timeout + _SLACK, ticket=ticket, **kwargs
            )
        except BaseException as exc:
            if not isinstance(exc, Exception) or isinstance(exc, CallTimeout):
                # Interrupted (or the daemon went quiet): withdraw, or undo a grant we never saw.
                try:
                    core.tell_daemon("sync_cancel", ticket)
                except Exception:
                    pass
            raise

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


class Mutex(_Handle):
    """A named cross-process mutex (not reentrant; FIFO; released if its holder dies)."""

    kind = "mutex"

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """Wait for the mutex; True once held, False if ``timeout`` passed (or it is taken and not ``blocking``).

        Raises:
            DeadlockError: this holder already holds it, or waiting would close a cycle of waiters.
        """
        timeout = 0.0 if not blocking else _check_timeout(timeout)
        return self._wait("sync_acquire", self.kind, self.name, self._params, _who_sync(), timeout, timeout=timeout)

    def release(self) -> None:
        """Release it.

        Raises:
            LockError: you do not hold it (or hold no unit of a semaphore).
        """
        self._kernel._control("sync_release", self.kind, self.name, _who_sync())

    def __enter__(self) -> Mutex:
        if not self.acquire(timeout=self.timeout):
            raise CallTimeout(f"{self.kind} {self.name!r} not acquired within {self.timeout} s")
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


class Semaphore(Mutex):
    """A named counting semaphore of ``n`` units; each holder releases only units it holds."""

    kind = "semaphore"

    def __init__(self, kernel: Any, name: str, n: int, timeout: float | None = None) -> None:
        super().__init__(kernel, name, {"n": _positive(n, "semaphore count n")}, timeout)
        self.n = n


class Condition(Mutex):
    """A named condition variable with its own lock: ``with cond: cond.wait_for(ready)``."""

    kind = "condition"

    def wait(self, timeout: float | None = None) -> bool:
        """Release the lock, sleep until notified, re-acquire; False if ``timeout`` passed first.

        Raises:
            LockError: you do not hold the lock.
        """
        timeout = _check_timeout(timeout)
        return self._wait("cond_wait", self.name, _who_sync(), timeout, timeout=timeout)

    def wait_for(self, predicate: Callable[[], Any], timeout: float | None = None) -> Any:
        """Wait until ``predicate()`` is true (checked with the lock held); returns its last value."""
        deadline = None if timeout is None else time.monotonic() + timeout
        result = predicate()
        while not result:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                break
            self.wait(left)
            result = predicate()
        return result

    def notify(self, n: int = 1) -> int:
        """Wake up to ``n`` waiters (oldest first); you must hold the lock. Returns how many woke."""
        return self._kernel._control("cond_notify", self.name, _who_sync(), n)

    def notify_all(self) -> int:
        return self._kernel._control("cond_notify", self.name, _who_sync(), -1)


class Barrier(_Handle):
    """A named barrier: ``wait()`` returns once ``parties`` callers (any processes) have arrived."""

    kind = "barrier"

    def __init__(self, kernel: Any, name: str, parties: int) -> None:
        super().__init__(kernel, name, {"parties": _positive(parties, "barrier parties")})
        self.parties = parties

    def wait(self, timeout: float | None = None) -> int:
        """Arrive and wait; returns this caller's arrival index (0 .. parties-1).

        Raises:
            CallTimeout: not enough parties arrived within ``timeout`` (this caller leaves the barrier).
        """
        timeout = _check_timeout(timeout)
        return self._wait("barrier_wait", self.name, self.parties, _who_sync(), timeout, timeout=timeout)


class Event(_Handle):
    """A named event flag: ``set()`` wakes every ``wait()``er."""

    kind = "event"

    def set(self) -> None:
        self._kernel._control("event_set", self.name)

    def clear(self) -> None:
        self._kernel._control("event_clear", self.name)

    def is_set(self) -> bool:
        return self._kernel._control("event_is_set", self.name)

    def wait(self, timeout: float | None = None) -> bool:
        """True once set; False if ``timeout`` passed first."""
        timeout = _check_timeout(timeout)
        return self._wait("event_wait", self.name, _who_sync(), timeout, timeout=timeout)


# ---------------------------------------------------------------------------- asyncio flavour
class _AsyncHandle(_Handle):
    async def _await(self, method: str, *args: Any, timeout: float | None, **kwargs: Any) -> Any:
        core = self._kernel._core
        ticket = core.next_id()
        try:
            return await self._kernel._control(
                method, *args, timeout=None if timeout is None else timeout + _SLACK, ticket=ticket, **kwargs
            )
        except BaseException as exc:
            if not isinstance(exc, Exception) or isinstance(exc, CallTimeout):  # cancelled: withdraw
                try:
                    core.tell_daemon("sync_cancel", ticket)
                except Exception:
                    pass
            raise


class AsyncMutex(_AsyncHandle):
    """``Mutex`` for asyncio (the holder is the current task): ``async with akernel.mutex("m"):``."""

    kind = "mutex"

    async def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        timeout = 0.0 if not blocking else _check_timeout(timeout)
        return await self._await(
            "sync_acquire", self.kind, self.name, self._params, _who_async(), timeout, timeout=timeout
        )

    async def release(self) -> None:
        await self._kernel._control("sync_release", self.kind, self.name, _who_async())

    async def __aenter__(self) -> AsyncMutex:
        if not await self.acquire(timeout=self.timeout):
            raise CallTimeout(f"{self.kind} {self.name!r} not acquired within {self.timeout} s")
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.release()


class AsyncSemaphore(AsyncMutex):
    kind = "semaphore"

    def __init__(self, kernel: Any, name: str, n: int, timeout: float | None = None) -> None:
        super().__init__(kernel, name, {"n": _positive(n, "semaphore count n")}, timeout)
        self.n = n


class AsyncCondition(AsyncMutex):
    kind = "condition"

    async def wait(self, timeout: float | None = None) -> bool:
        timeout = _check_timeout(timeout)
        return await self._await("cond_wait", self.name, _who_async(), timeout, timeout=timeout)

    async def wait_for(self, predicate: Callable[[], Any], timeout: float | None = None) -> Any:
        deadline = None if timeout is None else time.monotonic() + timeout
        result = predicate()
        while not result:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                break
            await self.wait(left)
            result = predicate()
        return result

    async def notify(self, n: int = 1) -> int:
        return await self._kernel._control("cond_notify", self.name, _who_async(), n)

    async def notify_all(self) -> int:
        return await self._kernel._control("cond_notify", self.name, _who_async(), -1)


class AsyncBarrier(_AsyncHandle):
    kind = "barrier"

    def __init__(self, kernel: Any, name: str, parties: int) -> None:
        super().__init__(kernel, name, {"parties": _positive(parties, "barrier parties")})
        self.parties = parties

    async def wait(self, timeout: float | None = None) -> int:
        timeout = _check_timeout(timeout)
        return await self._await("barrier_wait", self.name, self.parties, _who_async(), timeout, timeout=timeout)


class AsyncEvent(_AsyncHandle):
    kind = "event"

    async def set(self) -> None:
        await self._kernel._control("event_set", self.name)

    async def clear(self) -> None:
        await self._kernel._control("event_clear", self.name)

    async def is_set(self) -> bool:
        return await self._kernel._control("event_is_set", self.name)

    async def wait(self, timeout: float | None = None) -> bool:
        timeout = _check_timeout(timeout)
        return await self._await("event_wait", self.name, _who_async(), timeout, timeout=timeout)


# ---------------------------------------------------------------------------- kernel mixins
class SyncMixin:
    """``Kernel`` methods: handles on named sync objects (created in the daemon on first use)."""

    _control: Callable[..., Any]

    def mutex(self, name: str, *, timeout: float | None = None) -> Mutex:
        """A named mutex; ``timeout`` bounds the ``with`` form (``CallTimeout`` when it passes)."""
        return Mutex(self, name, timeout=timeout)

    def semaphore(self, name: str, n: int, *, timeout: float | None = None) -> Semaphore:
        """A named semaphore of ``n`` >= 1 units (every user must name the same ``n``)."""
        return Semaphore(self, name, n, timeout)

    def condition(self, name: str, *, timeout: float | None = None) -> Condition:
        return Condition(self, name, timeout=timeout)

    def barrier(self, name: str, parties: int) -> Barrier:
        """A named barrier for ``parties`` >= 1 callers."""
        return Barrier(self, name, parties)

    def event(self, name: str) -> Event:
        return Event(self, name)

    def sync_objects(self) -> list[dict]:
        """Every named sync object: kind, holder(s), waiters, counters."""
        return self._control("sync_list")

    def sync_delete(self, name: str) -> bool:
        """Forget an idle object (nobody holds or waits on it); False if there was none."""
        return self._control("sync_delete", _check_name(name))


class AsyncSyncMixin:
    """``AsyncKernel`` methods: the same handles, awaited (``async with akernel.mutex("m")``)."""

    _control: Callable[..., Any]

    def mutex(self, name: str, *, timeout: float | None = None) -> AsyncMutex:
        return AsyncMutex(self, name, timeout=timeout)

    def semaphore(self, name: str, n: int, *, timeout: float | None = None) -> AsyncSemaphore:
        return AsyncSemaphore(self, name, n, timeout)

    def condition(self, name: str, *, timeout: float | None = None) -> AsyncCondition:
        return AsyncCondition(self, name, timeout=timeout)

    def barrier(self, name: str, parties: int) -> AsyncBarrier:
        return AsyncBarrier(self, name, parties)

    def event(self, name: str) -> AsyncEvent:
        return AsyncEvent(self, name)

    async def sync_objects(self) -> list[dict]:
        return await self._control("sync_list")

    async def sync_delete(self, name: str) -> bool:
        return await self._control("sync_delete", _check_name(name))
