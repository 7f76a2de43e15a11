"""Stopping an actor's work: let it finish within a grace period, then fail what is left.

A mixin of ``ActorExecutor``. Once ``drain`` starts, every outcome wakes it (so it
sees the executor go idle without polling); whatever has not finished when the grace
period ends is cut off, and its callers are told the actor died rather than left waiting.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .._rpc.requests import Request
from .._wire import protocol as P
from ..errors import ActorDiedError
from .mailbox import Mailbox
from .stream_runner import StreamRunner


class Draining:
    """``drain``, and the outcome hooks that wake it while it waits."""

    label: str
    stats: dict
    stopping: bool
    server: Any
    mailbox: Mailbox
    streams: StreamRunner
    threads: ThreadPoolExecutor | None
    tasks: set[asyncio.Future]
    busy_sync: int
    busy_async: int
    _active: dict[tuple[bytes, int], asyncio.Future]
    _changed: asyncio.Event | None  # set on every completion while draining
    pump: Any

    def succeed(self, req: Request, value: Any) -> None:
        super().succeed(req, value)  # type: ignore[misc]
        if self._changed is not None:
            self._changed.set()

    def fail(self, req: Request, exc: BaseException, *, traceback: bool = True) -> None:
        super().fail(req, exc, traceback=traceback)  # type: ignore[misc]
        if self._changed is not None:
            self._changed.set()

    @property
    def busy(self) -> bool:
        return bool(len(self.mailbox) or self.busy_sync or self.busy_async)

    async def drain(self, grace: float, *, cancel: bool = False) -> None:
        """Stop taking work; let queued and running work finish for up to ``grace`` s (or cancel it)."""
        self.stopping = True
        self.server.pause_reading()
        deadline = time.monotonic() + grace
        self._changed = asyncio.Event()
        while not cancel and self.busy:
            self._changed.clear()
            self.pump()
            left = deadline - time.monotonic()
            if left <= 0 or not self.busy:
                break
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except asyncio.TimeoutError:
                break
        for entry in self.mailbox.remove(lambda e: True):
            if type(entry) is Request and entry.kind != P.TELL:
                self.fail(
                    entry, ActorDiedError(f"{self.label} stopped before running {entry.method!r}"), traceback=False
                )
        self.streams.drop_all("actor stopping")
        cancelled = list(self._active.values())
        for task in cancelled:
            task.cancel()
        if cancelled:  # let them reply (ActorDiedError, see _finished) before the socket closes
            await asyncio.wait(cancelled, timeout=0.5)
        if self.threads is not None:
            self.threads.shutdown(wait=False, cancel_futures=True)

    def _finished(self, req: Request, task: asyncio.Future) -> None:
        if self.stopping and task.cancelled():  # cut off by a stop: to the caller, the actor died
            self.tasks.discard(task)
            self.fail(req, ActorDiedError(f"{self.label} stopped while running {req.method!r}"), traceback=False)
            return
        super()._finished(req, task)  # type: ignore[misc]
