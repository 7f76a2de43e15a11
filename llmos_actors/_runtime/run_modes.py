"""How a started request runs: inline on the actor's thread, on a pool thread, as a task, or in a span.

A mixin of ``ActorExecutor`` (its state: ``busy_sync``, ``busy_async``, ``threads``,
``timings``, ``tracer``, the tasks in flight), kept apart from the mailbox and the pump
that decide *when* work runs. Methods, not objects between the pump and the call: the
inline path costs what it cost before the split.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .._callctx import CURRENT_CALL
from .._rpc.requests import Request
from .._wire import protocol as P
from ..scheduling import CALL_LEVEL
from .methods import ASYNC
from .timings import CallTimings

#: Result types that are certainly not awaitable (skips inspect.isawaitable on the hot path).
_PLAIN = frozenset({int, float, str, bytes, bool, list, dict, tuple})


class RunModes:
    """Running one request's method and tracking it until its reply is sent."""

    loop: asyncio.AbstractEventLoop
    threads: ThreadPoolExecutor | None
    busy_sync: int
    busy_async: int
    done_tells: int
    priority: int
    timings: CallTimings | None
    tracer: Any
    span_prefix: str
    stats: dict
    _active: dict[tuple[bytes, int], asyncio.Future]
    # Methods of the executor and its Invoker base (annotations only: nothing here shadows them).
    level_of: Callable[[Request], int | None]
    schedule_pump: Callable[[], None]
    await_result: Callable[[Request, Any], asyncio.Future]
    succeed: Callable[[Request, Any], None]
    fail: Callable[..., None]

    def _run(self, req: Request, fn: Callable[..., Any], kind: str) -> None:
        if kind == ASYNC:
            self._run_async(req, fn)
        elif self.threads is not None:
            self._run_in_pool(req, fn)
        else:
            self._run_inline(req, fn)

    def _run_traced(self, req: Request, fn: Callable[..., Any], kind: str) -> None:
        """Run a request inside a server span when its header carries trace context.

        The span is current while the method starts (an ``async`` method's task copies it),
        so calls it makes continue the trace; it ends when the outcome is known.
        """
        tracer = self.tracer
        span, token = tracer.enter(req.head, self.span_prefix, req.method)
        failed = self.stats.get("failed", 0)
        try:
            self._run(req, fn, kind)
        finally:
            if token is not None:
                tracer.leave(token)
        if span is None:
            return
        task = self._active.get((req.ident, req.id))
        if task is None:
            if self.stats.get("failed", 0) != failed:
                tracer.fail(span, "the method raised")
            span.end()
            return

        def end(t: asyncio.Future) -> None:
            if t.cancelled() or t.exception() is not None:
                tracer.fail(span, "the method raised or was cancelled")
            span.end()

        task.add_done_callback(end)

    def _run_inline(self, req: Request, fn: Callable[..., Any]) -> None:
        self.busy_sync = 1
        try:
            result = fn(*req.args, **req.kwargs) if req.kwargs else fn(*req.args)
        except Exception as exc:
            self.busy_sync = 0
            self.fail(req, exc)
            return
        self.busy_sync = 0
        if result is not None and type(result) not in _PLAIN and inspect.isawaitable(result):
            self._track_async(req, result)
        elif req.kind == P.TELL:
            self.done_tells += 1
        else:
            self.succeed(req, result)

    def _run_in_pool(self, req: Request, fn: Callable[..., Any]) -> None:
        self.busy_sync += 1
        call = functools.partial(fn, *req.args, **req.kwargs)
        fut = self.loop.run_in_executor(self.threads, call)
        start = time.monotonic()

        def done(f: asyncio.Future) -> None:
            self.busy_sync -= 1
            if self.timings is not None:
                self.timings.run.observe(time.monotonic() - start)
            exc = f.exception()
            if exc is not None:
                self.fail(req, exc)
            else:
                result = f.result()
                if inspect.isawaitable(result):
                    self._track_async(req, result)
                else:
                    self.succeed(req, result)
            self.schedule_pump()

        fut.add_done_callback(done)

    def _run_async(self, req: Request, fn: Callable[..., Any]) -> None:
        level = self.level_of(req)
        token = CALL_LEVEL.set(self.priority if level is None else level)  # the task copies it
        call = CURRENT_CALL.set(req)  # and its deadline (see callctx)
        try:
            try:
                coro = fn(*req.args, **req.kwargs)
            except Exception as exc:
                self.fail(req, exc)
                return
            self._track_async(req, coro, time.monotonic() if self.timings is not None else None)
        finally:
            CALL_LEVEL.reset(token)
            CURRENT_CALL.reset(call)

    def _track_async(self, req: Request, awaitable: Any, start: float | None = None) -> None:
        self.busy_async += 1
        task = self.await_result(req, awaitable)
        self._active[(req.ident, req.id)] = task

        def release(_: Any) -> None:
            if start is not None and self.timings is not None:
                self.timings.run.observe(time.monotonic() - start)
            self.busy_async -= 1
            self._active.pop((req.ident, req.id), None)
            self.schedule_pump()

        task.add_done_callback(release)
