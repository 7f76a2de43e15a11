"""The asyncio loop that drives a set of sockets, and the IO thread that hosts one.

Synchronous clients run their loop on a private daemon thread (``IOThread``);
async clients and actors drive sockets from a loop they already run.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop where it is installed (everywhere but Windows), else asyncio's own."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency off Windows
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class LoopDriver:
    """A loop plus the identity of the thread running it.

    Attributes:
        stats: counters of things dropped or refused, shown by ``ps``/``status``.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, thread_id: int | None = None) -> None:
        self.loop = loop
        self.thread_id = thread_id if thread_id is not None else threading.get_ident()
        self.stats: dict[str, int] = {}
        self.log = logging.getLogger("llmos_actors.rpc")

    def in_loop_thread(self) -> bool:
        return threading.get_ident() == self.thread_id

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn`` on the loop soon, from any thread."""
        if threading.get_ident() == self.thread_id:
            self.loop.call_soon(fn, *args)
        else:
            try:
                self.loop.call_soon_threadsafe(fn, *args)
            except RuntimeError:  # loop already closed: the client is shutting down
                pass


class IOThread:
    """A daemon thread running an event loop for a synchronous client."""

    def __init__(self, name: str = "llmos-io") -> None:
        self.loop = new_event_loop()
        started = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(started,), name=name, daemon=True)
        self._thread.start()
        started.wait()
        self.driver = LoopDriver(self.loop, self._thread.ident)

    def _run(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(started.set)
        self.loop.run_forever()

    def run(self, fn: Callable[..., Any], *args: Any, timeout: float | None = None) -> Any:
        """Run ``fn(*args)`` on the loop thread and return its result (or raise its error).

        ``fn`` may return a coroutine, which is awaited on the loop.
        """
        if self.driver.in_loop_thread():
            raise RuntimeError("IOThread.run called from its own loop thread")

        async def runner() -> Any:
            result = fn(*args)
            if asyncio.iscoroutine(result):
                result = await result
            return result

        return asyncio.run_coroutine_threadsafe(runner(), self.loop).result(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        if not self._thread.is_alive():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self.loop.close()
