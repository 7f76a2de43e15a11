"""The clock that policy objects read and arm timers on.

Policy (sync-object timeouts in the daemon, stream quanta in actors) takes a
``Clock`` instead of calling ``time.monotonic`` and ``loop.call_later`` itself,
so it runs the same on the event loop (``LoopClock``) and on a ``ManualClock``
in unit tests, where time moves only when the test says so (the idea of trio's
MockClock): a test of a 30-second timeout takes no time and cannot be late.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable
from typing import Any, Protocol


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    """What policy needs of time: now (monotonic seconds), and a callback after a delay."""

    def time(self) -> float: ...

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> TimerHandle: ...


class LoopClock:
    """The real clock: ``time.monotonic`` for now (an event loop's ``time()`` may be cached for
    the whole loop iteration, uvloop's is), and the loop's timers."""

    __slots__ = ("call_later", "time")

    def __init__(self, loop: Any) -> None:
        self.time = time.monotonic
        self.call_later = loop.call_later


class ManualTimer:
    __slots__ = ("args", "callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[..., Any], args: tuple) -> None:
        self.when = when
        self.callback = callback
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class ManualClock:
    """A ``Clock`` that moves only by ``advance``; due timers run inside it, in deadline order."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self._timers: list[tuple[float, int, ManualTimer]] = []
        self._order = itertools.count()

    def time(self) -> float:
        return self.now

    __call__ = time  # also usable where a ``time.monotonic``-like function is expected

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> ManualTimer:
        timer = ManualTimer(self.now + max(0.0, delay), callback, args)
        heapq.heappush(self._timers, (timer.when, next(self._order), timer))
        return timer

    def pending(self) -> int:
        """Timers armed and not cancelled."""
        return sum(1 for _, _, t in self._timers if not t.cancelled)

    def advance(self, seconds: float) -> None:
        """Move time forward, running each timer that falls due at its own deadline."""
        target = self.now + seconds
        while self._timers and self._timers[0][0] <= target:
            when, _, timer = heapq.heappop(self._timers)
            self.now = max(self.now, when)
            if not timer.cancelled:
                timer.callback(*timer.args)
        self.now = target
