"""What a pending request waits on: one class per way a caller waits.

A waiter is resolved exactly once, by whoever pops it from the connection's
pending table (pops are atomic), so no waiter needs a lock of its own besides
the one the blocked thread sleeps on.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import threading
import time
from typing import Any

from ..errors import CallTimeout, ClosedError


class BlockingWaiter:
    """A thread blocked in ``ref.call()``: sleeps on a lock released by ``resolve``."""

    __slots__ = ("_lock", "done", "ok", "value")
    streaming = False

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()
        self.done = False
        self.ok = False
        self.value: Any = None

    def resolve(self, ok: bool, value: Any) -> None:
        self.ok, self.value, self.done = ok, value, True
        self._lock.release()

    def finished(self) -> bool:
        return self.done

    def wait(self, timeout: float | None) -> bool:
        """True once resolved; False if ``timeout`` seconds passed first."""
        if self.done:
            return True
        return self._lock.acquire(timeout=-1 if timeout is None else max(timeout, 0.0))

    def result(self) -> Any:
        if self.ok:
            return self.value
        raise self.value


_FINISHED = "FINISHED"  # concurrent.futures' state names
_PENDING = "PENDING"
_CANCELLED = "CANCELLED"
_SETTLED = frozenset({_FINISHED, _CANCELLED, "CANCELLED_AND_NOTIFIED"})

#: The attributes ``concurrent.futures.Future.__init__`` sets; if a Python version sets others,
#: ``LlmosFuture`` lets it do its own ``__init__``.
_FIELDS = {"_condition", "_state", "_result", "_exception", "_waiters", "_done_callbacks"}
_OWN_INIT = set(vars(concurrent.futures.Future())) == _FIELDS


class LlmosFuture(concurrent.futures.Future):
    """The future ``ref.ask()`` returns: a ``concurrent.futures.Future`` you may also ``await``.

    Cheaper than a plain one where pipelined asks pay per call (``llmos bench``
    1_1_actor_calls_pipelined): the futures of one connection share its condition instead of
    building one each; a finished one answers ``result()`` without taking it; and ``result()``
    on a pending one first reads replies on the caller's thread (``Connection.pump``), so a
    caller waiting for its asks costs no thread hand-off per batch.

    Args:
        condition: shared with the connection's other futures (None: one of its own).
    """

    streaming = False
    _conn: Any = None

    def __init__(self, condition: threading.Condition | None = None) -> None:
        if condition is None or not _OWN_INIT:
            super().__init__()
            return
        self._condition = condition
        self._state = _PENDING
        self._result = None
        self._exception = None
        self._waiters: list = []
        self._done_callbacks: list = []

    def resolve(self, ok: bool, value: Any) -> None:
        # One locked section instead of set_running_or_notify_cancel + set_result (two).
        with self._condition:
            if self._state != _PENDING:
                if self._state == _CANCELLED:
                    self.set_running_or_notify_cancel()
                return
            if ok:
                self._result = value
            else:
                self._exception = value
            self._state = _FINISHED
            for waiter in self._waiters:
                if ok:
                    waiter.add_result(self)
                else:
                    waiter.add_exception(self)
            self._condition.notify_all()
        if self._done_callbacks:
            self._invoke_callbacks()  # type: ignore[attr-defined]

    def finished(self) -> bool:
        return self._state != _PENDING

    def _settle(self, timeout: float | None) -> None:
        """Wait until finished or cancelled; a shared condition wakes for other futures too.

        Raises:
            TimeoutError: ``timeout`` seconds passed first.
        """
        if self._state == _PENDING and self._conn is not None:
            self._conn.pump(self)
        if self._state in _SETTLED:
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._condition:
            while self._state not in _SETTLED:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise concurrent.futures.TimeoutError()
                self._condition.wait(left)

    def result(self, timeout: float | None = None) -> Any:
        if self._state == _FINISHED and self._exception is None:
            return self._result  # set before the state, under the condition
        self._settle(timeout)
        return super().result(0)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        self._settle(timeout)
        return super().exception(0)

    def __await__(self):
        return asyncio.wrap_future(self).__await__()


class AsyncWaiter:
    """An asyncio future on the loop that also reads the socket (async clients)."""

    __slots__ = ("future",)
    streaming = False

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.future = loop.create_future()

    def resolve(self, ok: bool, value: Any) -> None:
        fut = self.future
        if not fut.done():
            if ok:
                fut.set_result(value)
            else:
                fut.set_exception(value)


_END = object()


class StreamWaiter:
    """Items of a streaming call, buffered until the caller takes them.

    Works for both sync consumers (``get`` blocks on a condition) and async
    consumers (``aget`` awaits an event set on the owning loop).
    """

    streaming = True

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._items: collections.deque = collections.deque()
        self._cond = threading.Condition(threading.Lock())
        self._loop = loop
        self._event = asyncio.Event() if loop is not None else None
        self.done = False

    # producer side (the reader of the socket)
    def item(self, value: Any) -> None:
        with self._cond:
            self._items.append((True, value))
            self._cond.notify()
        self._wake()

    def resolve(self, ok: bool, value: Any) -> None:
        """End of stream (ok) or its error."""
        with self._cond:
            if not self.done:
                self.done = True
                self._items.append((ok, _END if ok else value))
            self._cond.notify_all()
        self._wake()

    def _wake(self) -> None:
        if self._event is not None:
            self._event.set()

    # consumer side
    def get(self, timeout: float | None) -> tuple[bool, Any]:
        """Next ``(ok, value)``; value is ``END`` when the stream finished."""
        with self._cond:
            if not self._items and not self._cond.wait_for(lambda: self._items, timeout):
                return False, CallTimeout(f"no stream item within {timeout} s")
            return self._items.popleft()

    async def aget(self) -> tuple[bool, Any]:
        assert self._event is not None
        while True:
            with self._cond:
                if self._items:
                    return self._items.popleft()
                self._event.clear()
            await self._event.wait()

    def close(self) -> None:
        with self._cond:
            if not self.done:
                self.done = True
                self._items.append((False, ClosedError("stream closed")))
            self._cond.notify_all()

    END = _END
