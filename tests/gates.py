"""Gates: a test holds an actor's call at a known point and lets it go when it chooses.

A call that must be "in progress" while something else happens (a timeout, a kill, a full
mailbox, a restart) holds on a gate instead of sleeping for a guessed duration::

    gate = Gate(tmp_path)
    fut = ref.ask("hold", gate.path)  # the actor method calls hold(gate.path)
    gate.wait_held()                  # the call is running now
    ...                               # what must happen while it runs
    gate.open()                       # now it returns True

A gate is two files beside ``gate.path``: ``.held`` gets one byte per call that reached it,
and ``.open`` appears when the test opens it. Files, not a kernel object, so a gate works
while the daemon under test is stopped, frozen or killed. A hold never opened ends itself
after its ``timeout`` (returning False), so no process outlives the test for long; a test
that wants "a call longer than the timeout" leaves its gate shut and lets the call's own
timeout decide.

Actor processes import this module too: it must not import pytest (``llmos_actors.testing``
does, so its ``wait_for`` is imported only where the test waits).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path

#: How often a held call looks at its gate (seconds): the latency of ``open()``.
TICK = 0.005


class Gate:
    """The test's side: open the gate, and count the calls that reached it."""

    def __init__(self, directory: str | os.PathLike[str], name: str = "gate") -> None:
        self.path = str(Path(directory) / name)

    def held(self) -> int:
        """How many calls have reached the gate (held now, or let go since)."""
        try:
            return os.path.getsize(self.path + ".held")
        except FileNotFoundError:
            return 0

    def wait_held(self, n: int = 1, timeout: float = 10.0) -> int:
        """Wait until ``n`` calls have reached the gate; TimeoutError after ``timeout``."""
        from llmos_actors.testing import wait_for

        wait_for(lambda: self.held() >= n, timeout, what=f"{n} calls held at {self.path}")
        return self.held()

    def open(self) -> None:
        """Let every held call go, and every later one pass straight through."""
        Path(self.path + ".open").touch()


def _arrive(gate: str, timeout: float) -> float:
    """Mark one more call at ``gate``; the monotonic time its hold ends by itself."""
    fd = os.open(gate + ".held", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, b".")  # one byte, appended atomically: concurrent holds count exactly
    finally:
        os.close(fd)
    return time.monotonic() + timeout


def _shut(gate: str, end: float) -> bool:
    """True while the hold should go on: the gate is shut and its deadline has not passed."""
    return not os.path.exists(gate + ".open") and time.monotonic() < end


def hold(gate: str, timeout: float = 30.0, until: Callable[[], bool] | None = None) -> bool:
    """In an actor: block until the test opens ``gate`` or ``until()`` is true (True), or
    ``timeout`` passes (False)."""
    end = _arrive(gate, timeout)
    while _shut(gate, end):
        if until is not None and until():
            return True
        time.sleep(TICK)
    return os.path.exists(gate + ".open")


async def hold_async(gate: str, timeout: float = 30.0) -> bool:
    """``hold`` for coroutine methods: awaits, so other coroutines (and cancellation) go on."""
    end = _arrive(gate, timeout)
    while _shut(gate, end):
        await asyncio.sleep(TICK)
    return os.path.exists(gate + ".open")


class Holds:
    """Mixin for test actors: ``ref.ask("hold", gate.path)`` is a call that runs until the gate opens."""

    def hold(self, gate: str, timeout: float = 30.0) -> bool:
        return hold(gate, timeout)

    def hold_until_arrived(self, gate: str, n: int, timeout: float = 30.0) -> bool:
        """Keep the actor busy until ``n`` calls have arrived (or the gate opens).

        A plain method blocks the actor's loop, so nothing is read from its socket while it
        runs, and when it returns the calls still on their way would not compete with those
        already read. This one reads what arrives (the runtime's own intake) until ``n`` calls
        are queued in the mailbox or dropped because it was full: a test that sends them next
        knows they met the mailbox together.
        """
        runtime = self._llmos_runtime  # type: ignore[attr-defined]
        executor = runtime.executor

        def arrived() -> bool:
            runtime.server.intake()
            return len(executor.mailbox) + executor.stats.get("dropped", 0) >= n

        return hold(gate, timeout, until=arrived)
