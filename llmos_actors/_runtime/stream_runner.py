"""Streaming calls in an actor: turns, credit, parking, and callers that go away.

A sync generator runs in turns: each turn sends items until its quantum ends
(measured on the injected clock), its credit runs out, or it finishes; then it
goes back in the mailbox behind whatever else waits (round robin between long
generations), one level lower (MLFQ feedback: aging lifts it back). Out of
credit, it parks until the caller grants more. An async generator runs as a
task and waits on an event while out of credit. Parked streams send nothing,
so nothing tells us their caller died: the runner pings parked callers now
and then, on the same clock.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from .._callctx import CURRENT_CALL
from .._clock import Clock
from .._rpc.server import Request
from .._wire import protocol as P
from ..errors import LlmosError
from ..scheduling import CALL_LEVEL
from .methods import AGEN, GEN

log = logging.getLogger(__name__)


#: Items a stream may send before the caller grants more (the caller's default window).
DEFAULT_CREDIT = 64
#: Seconds a generator runs per turn before others get theirs.
STREAM_QUANTUM = 0.005
#: Seconds between checks that callers of parked streams are still there.
PARKED_CHECK = 0.5


class Stream:
    """One streaming call in progress."""

    __slots__ = ("cancelled", "credit", "gen", "items", "kind", "level", "parked", "req", "running", "task", "wakeup")

    def __init__(self, req: Request, gen: Any, kind: str, credit: int, level: int | None = None) -> None:
        self.req = req
        self.level = level
        self.gen = gen
        self.kind = kind
        self.credit = credit
        self.parked = False  # out of credit, waiting for a CREDIT message
        self.cancelled = False
        self.running = False
        self.task: asyncio.Task | None = None
        self.wakeup: asyncio.Event | None = None
        self.items = 0

    @property
    def prio(self) -> int | None:
        return self.req.prio

    @property
    def waiting_for_credit(self) -> bool:
        return self.parked or (self.kind == AGEN and self.credit <= 0)


class StreamTurn:
    """A mailbox entry: run a sync generator stream for one quantum."""

    __slots__ = ("stream",)

    def __init__(self, stream: Stream) -> None:
        self.stream = stream

    @property
    def prio(self) -> int | None:
        return self.stream.level


class Replies(Protocol):
    """Where stream items go (the actor's ``RpcServer``)."""

    def reply(self, ident: bytes, msg_id: int, kind: str, value: Any) -> Any: ...
    def gone(self, ident: bytes) -> bool: ...
    def ping(self, ident: bytes) -> bool: ...


class StreamHost(Protocol):
    """What the runner needs of the executor: its counters, failures, and the mailbox."""

    busy_sync: int
    busy_async: int
    stats: dict

    def fail(self, req: Request, exc: BaseException, *, traceback: bool = True) -> None: ...
    def requeue(self, turn: StreamTurn) -> None: ...
    def async_done(self) -> None: ...


class StreamRunner:
    """The streams of one actor (see the module docstring)."""

    def __init__(
        self,
        host: StreamHost,
        replies: Replies,
        clock: Clock,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
        quantum: float = STREAM_QUANTUM,
    ) -> None:
        self.host = host
        self.replies = replies
        self.clock = clock
        self.loop = loop
        self.quantum = quantum
        self.streams: dict[tuple[bytes, int], Stream] = {}
        self._watching = False

    def __len__(self) -> int:
        return len(self.streams)

    def start(self, req: Request, fn: Any, kind: str, level: int | None) -> None:
        """A method was called with ``ref.stream()``: if it is a generator, run its first turn (or its task)."""
        if kind not in (GEN, AGEN):
            self.host.fail(req, LlmosError(f"{req.method!r} is not a generator method: use call()"), traceback=False)
            return
        token = CALL_LEVEL.set(level)  # the call's level, seen by the generator (an async one's task copies it)
        try:
            gen = fn(*req.args, **req.kwargs)
        except Exception as exc:
            self.host.fail(req, exc)
            return
        finally:
            CALL_LEVEL.reset(token)
        credit = req.head.get("credit", DEFAULT_CREDIT)
        credit = credit if type(credit) is int and credit > 0 else DEFAULT_CREDIT
        stream = Stream(req, gen, kind, credit, level)
        self.streams[(req.ident, req.id)] = stream
        if kind == AGEN:
            assert self.loop is not None, "async generators need the actor's loop"
            stream.wakeup = asyncio.Event()
            self.host.busy_async += 1
            token, call = CALL_LEVEL.set(level), CURRENT_CALL.set(req)  # the task copies both (see callctx)
            stream.task = self.loop.create_task(self._run_async(stream))
            CALL_LEVEL.reset(token)
            CURRENT_CALL.reset(call)
        else:
            self.turn(stream)

    def turn(self, stream: Stream) -> None:
        """Run a sync generator until its quantum ends, its credit runs out, or it finishes."""
        if stream.cancelled:
            return
        req, replies, host = stream.req, self.replies, self.host
        now = self.clock.time
        end = now() + self.quantum
        used_quantum = False
        host.busy_sync += 1
        stream.running = True
        try:
            while stream.credit > 0:
                if replies.gone(req.ident):
                    self.drop(stream, "caller went away")
                    return
                try:
                    item = next(stream.gen)
                except StopIteration:
                    self._end(stream)
                    return
                except Exception as exc:
                    self.streams.pop((req.ident, req.id), None)
                    host.fail(req, exc)
                    return
                stream.credit -= 1
                stream.items += 1
                replies.reply(req.ident, req.id, P.ITEM, item)
                if now() > end:
                    used_quantum = True
                    break
        finally:
            stream.running = False
            host.busy_sync -= 1
        if stream.cancelled:
            stream.gen.close()
        elif stream.credit > 0:
            if used_quantum and stream.level:
                stream.level -= 1  # a long generation sinks; aging lifts it back
            host.requeue(StreamTurn(stream))  # back of the line: others get a turn
        else:
            stream.parked = True
            self._watch_parked()

    async def _run_async(self, stream: Stream) -> None:
        req, agen, replies = stream.req, stream.gen, self.replies
        assert stream.wakeup is not None
        try:
            while True:
                while stream.credit <= 0:
                    stream.wakeup.clear()
                    self._watch_parked()
                    await stream.wakeup.wait()
                if replies.gone(req.ident):
                    self.streams.pop((req.ident, req.id), None)
                    await agen.aclose()  # its finally blocks release what it holds
                    return
                try:
                    item = await agen.__anext__()
                except StopAsyncIteration:
                    self._end(stream)
                    return
                stream.credit -= 1
                stream.items += 1
                replies.reply(req.ident, req.id, P.ITEM, item)
        except asyncio.CancelledError:
            await agen.aclose()
        except Exception as exc:
            self.streams.pop((req.ident, req.id), None)
            self.host.fail(req, exc)
        finally:
            self.host.async_done()

    def _end(self, stream: Stream) -> None:
        req = stream.req
        self.streams.pop((req.ident, req.id), None)
        stats = self.host.stats
        stats["done"] = stats.get("done", 0) + 1
        self.replies.reply(req.ident, req.id, P.END, stream.items)

    def drop(self, stream: Stream, why: str) -> None:
        stream.cancelled = True
        self.streams.pop((stream.req.ident, stream.req.id), None)
        stats = self.host.stats
        stats["streams_cancelled"] = stats.get("streams_cancelled", 0) + 1
        log.info("stream %r cancelled: %s", stream.req.method, why)
        if stream.kind == AGEN:
            if stream.task is not None:
                stream.task.cancel()
        elif not stream.running:
            stream.gen.close()

    def drop_all(self, why: str) -> None:
        for stream in list(self.streams.values()):
            self.drop(stream, why)

    def _watch_parked(self) -> None:
        if not self._watching:
            self._watching = True
            self.clock.call_later(PARKED_CHECK, self._check_parked)

    def _check_parked(self) -> None:
        self._watching = False
        for stream in [s for s in self.streams.values() if s.waiting_for_credit]:
            if not self.replies.ping(stream.req.ident):
                self.drop(stream, "caller went away")
        if any(s.waiting_for_credit for s in self.streams.values()):
            self._watch_parked()

    def add_credit(self, ident: bytes, msg_id: int, n: Any) -> None:
        stream = self.streams.get((ident, msg_id))
        if stream is None or type(n) is not int or n <= 0:
            return
        stream.credit += n
        if stream.kind == AGEN:
            stream.wakeup.set()  # type: ignore[union-attr]
        elif stream.parked:
            stream.parked = False
            self.host.requeue(StreamTurn(stream))

    def cancel(self, ident: bytes, msg_id: int) -> bool:
        """The caller closed its stream: True if it was one of ours."""
        stream = self.streams.get((ident, msg_id))
        if stream is None:
            return False
        self.drop(stream, "the caller closed it")
        return True
