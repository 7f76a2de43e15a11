"""Running one request against a Python callable and replying with its outcome.

Shared by the daemon's control service and the actor runtime: sync results are
replied at once, awaitables (``async def`` methods, or sync methods that
return a future) are awaited on the loop, exceptions become error replies.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Callable
from typing import Any

from .._wire import protocol as P
from .._wire.codec import error_payload
from ..errors import CallTimeout, LlmosError, MethodNotFound
from .server import Request, RpcServer

log = logging.getLogger(__name__)

Resolver = Callable[[str], "Callable[..., Any] | None"]


class Invoker:
    """Calls ``resolve(method)(*args, **kwargs)`` for each request and replies.

    Args:
        server: where replies go.
        resolve: method name -> callable, or None for "no such public method".
        pass_request: call handlers as ``fn(request, *args, **kwargs)`` (the daemon
            needs to know who is asking).
        label: names the target in error messages.
    """

    def __init__(self, server: RpcServer, resolve: Resolver, *, pass_request: bool = False, label: str = "") -> None:
        self.server = server
        self.resolve = resolve
        self.pass_request = pass_request
        self.label = label
        self.stats = server.stats
        self.tasks: set[asyncio.Future] = set()

    def __call__(self, req: Request) -> None:
        self.run(req)

    # ------------------------------------------------------------------ running
    def expired(self, req: Request) -> bool:
        """Drop a request whose deadline passed while it waited (the caller has given up)."""
        if req.deadline is not None and req.deadline < time.monotonic():
            self.stats["expired"] = self.stats.get("expired", 0) + 1
            if req.kind != P.TELL:
                self.fail(req, CallTimeout(f"deadline passed before {req.method!r} started"), traceback=False)
            return True
        return False

    def run(self, req: Request) -> None:
        if req.kind not in (P.CALL, P.TELL):
            self.fail(
                req,
                LlmosError(f"{self.label or 'this endpoint'} does not accept {req.kind!r} requests"),
                traceback=False,
            )
            return
        fn = self.resolve(req.method)
        if fn is None:
            self.fail(
                req, MethodNotFound(f"{self.label or 'target'} has no public method {req.method!r}"), traceback=False
            )
            return
        if req.deadline is not None and self.expired(req):
            return
        try:
            result = fn(req, *req.args, **req.kwargs) if self.pass_request else fn(*req.args, **req.kwargs)
        except Exception as exc:
            self.fail(req, exc)
            return
        if inspect.isawaitable(result):
            self.await_result(req, result)
        else:
            self.succeed(req, result)

    def await_result(self, req: Request, awaitable: Any) -> asyncio.Future:
        task = asyncio.ensure_future(awaitable, loop=self.server.loop)
        self.tasks.add(task)
        task.add_done_callback(lambda t: self._finished(req, t))
        return task

    def _finished(self, req: Request, task: asyncio.Future) -> None:
        self.tasks.discard(task)
        if task.cancelled():
            self.fail(req, LlmosError(f"{req.method!r} was cancelled"), traceback=False)
            return
        exc = task.exception()
        if exc is not None:
            self.fail(req, exc)
        else:
            self.succeed(req, task.result())

    # ------------------------------------------------------------------ outcomes
    def succeed(self, req: Request, value: Any) -> None:
        self.stats["done"] = self.stats.get("done", 0) + 1
        if req.kind != P.TELL:
            self.server.reply(req.ident, req.id, P.OK, value)

    def fail(self, req: Request, exc: BaseException, *, traceback: bool = True) -> None:
        self.stats["failed"] = self.stats.get("failed", 0) + 1
        if req.kind == P.TELL:
            # Nobody waits for a tell: its failure goes to the log, with the traceback.
            log.error("tell %r failed", req.method, exc_info=(type(exc), exc, exc.__traceback__))
            return
        self.server.reply(req.ident, req.id, P.ERR, error_payload(exc, with_traceback=traceback))
