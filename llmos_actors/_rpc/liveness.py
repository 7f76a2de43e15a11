"""Waiting for a peer that its supervisor is restarting.

Callers that opted in (``wait_restart``) wait here for the next incarnation, from
plain threads or from coroutines on any loop.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

from ..errors import CallTimeout


def _set_none(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)


class Liveness:
    """Waiters for a peer to come back.

    Args:
        peer: a label for errors.
        down: whether the peer is still being restarted (the connection's state).
        clock: seconds, monotonic.
    """

    def __init__(self, peer: str, down: Callable[[], bool], clock: Callable[[], float] = time.monotonic) -> None:
        self.peer = peer
        self._down = down
        self.clock = clock
        self._cond = threading.Condition(threading.Lock())
        self._callbacks: list[Callable[[], None]] = []

    def wake(self) -> None:
        """The state changed: wake every waiter (threads and coroutines)."""
        with self._cond:
            self._cond.notify_all()
            callbacks = list(self._callbacks)
        for callback in callbacks:
            callback()

    def _too_late(self) -> CallTimeout:
        return CallTimeout(f"{self.peer} was still restarting at the call's deadline")

    def wait(self, deadline: float | None) -> None:
        """Block while the peer is restarting (until revived, dead for good, or the deadline).

        Raises:
            CallTimeout: the deadline passed while it was still restarting.
        """
        with self._cond:
            while self._down():
                left = None if deadline is None else deadline - self.clock()
                if left is not None and left <= 0:
                    raise self._too_late()
                self._cond.wait(left)

    async def wait_async(self, deadline: float | None) -> None:
        """``wait`` for coroutines (on any loop: wake-ups cross threads safely)."""
        loop = asyncio.get_running_loop()
        while self._down():
            fut = loop.create_future()

            def wake(fut: asyncio.Future = fut) -> None:
                loop.call_soon_threadsafe(_set_none, fut)

            with self._cond:
                self._callbacks.append(wake)
            try:
                if not self._down():
                    return
                left = None if deadline is None else deadline - self.clock()
                if left is not None and left <= 0:
                    raise self._too_late()
                try:
                    await asyncio.wait_for(fut, left)
                except asyncio.TimeoutError:
                    raise self._too_late() from None
            finally:
                with self._cond:
                    self._callbacks.remove(wake)
