"""Running requests against the actor instance: which methods are callable, when and how they run.

Requests go into the mailbox as the socket delivers them; ``pump`` takes them out
in order while there is capacity:

- plain methods run on the actor's main thread, one at a time (``max_concurrency``
  of 1), or on a pool of that many threads;
- ``async def`` methods run as tasks on the actor's loop, at most ``max_async`` at once;
- generator methods stream: each turn runs the generator for up to one quantum
  (or until the caller's credit runs out), then the stream goes back in the
  mailbox behind whatever else waits (round robin between long generations);
- topic deliveries call the subscribed method once per message.

The pump runs inline work for at most ``slice`` seconds before it yields to the
loop, so the socket is read (and higher-priority work seen) while a backlog drains.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .._rpc.invoke import Invoker
from .._rpc.server import Request, RpcServer
from .._wire import protocol as P
from ..actor import RESERVED_NAMES
from ..errors import ActorDiedError, LlmosError, MailboxFull, MethodNotFound
from ..scheduling import CALL_LEVEL, default_goal
from .mailbox import DEFAULT_AGING, DEFAULT_FLOOD_SHARE, DEFAULT_PRIORITY, FifoMailbox, Mailbox

log = logging.getLogger(__name__)

SYNC, ASYNC, GEN, AGEN = "sync", "async", "gen", "agen"

#: Items a stream may send before the caller grants more (the caller's default window).
DEFAULT_CREDIT = 64
#: Seconds a generator runs per turn before others get theirs.
STREAM_QUANTUM = 0.005
#: Seconds of inline work per pump before yielding to the loop (so the socket is read and
#: higher-priority work that arrived meanwhile goes next).
PUMP_SLICE = 0.0005
#: Within a slice, seconds between looks at the socket (an EVENTS query: well under a
#: microsecond), so an urgent call that arrived waits for at most one running method.
INTAKE_EVERY = 0.0002
#: Topic messages per mailbox entry: a topic batch (up to 1,024) is queued in pieces, so
#: urgent calls get a look-in between them, as between calls.
TOPIC_CHUNK = P.BATCH_MAX_ITEMS
#: Seconds between checks that callers of parked streams are still there.
PARKED_CHECK = 0.5


_PLAIN_KINDS = frozenset({P.CALL, P.TELL, P.STREAM})

#: Result types that are certainly not awaitable (skips inspect.isawaitable on the hot path).
_PLAIN = frozenset({int, float, str, bytes, bool, list, dict, tuple})


def classify(fn: Callable[..., Any]) -> str:
    target = getattr(fn, "__func__", fn)
    if inspect.iscoroutinefunction(target):
        return ASYNC
    if inspect.isasyncgenfunction(target):
        return AGEN
    if inspect.isgeneratorfunction(target):
        return GEN
    return SYNC


def public_method_resolver(instance: Any) -> Callable[[str], tuple[Callable[..., Any], str] | None]:
    """Map a method name to ``(bound method, kind)`` if it may be called remotely (cached)."""
    cache: dict[str, tuple[Callable[..., Any], str] | None] = {}

    def resolve(name: str) -> tuple[Callable[..., Any], str] | None:
        try:
            return cache[name]
        except KeyError:
            pass
        found = None
        if name and not name.startswith("_") and not name.startswith("actor_") and name not in RESERVED_NAMES:
            attr = getattr(instance, name, None)
            if callable(attr) and not isinstance(getattr(type(instance), name, None), property):
                found = (attr, classify(attr))
        if len(cache) < 4096:  # bounded: unknown names are cached too
            cache[name] = found
        return found

    return resolve


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


class StreamTurn:
    """A mailbox entry: run a sync generator stream for one quantum."""

    __slots__ = ("stream",)

    def __init__(self, stream: Stream) -> None:
        self.stream = stream

    @property
    def prio(self) -> int | None:
        return self.stream.level


class TopicDelivery:
    """A mailbox entry: messages published on a topic, for one subscribed method."""

    __slots__ = ("fn", "items", "kind", "prio", "topic")

    def __init__(self, fn: Callable[..., Any], kind: str, topic: str, items: list, prio: int | None = None) -> None:
        self.fn = fn
        self.kind = kind
        self.topic = topic
        self.items = items
        self.prio = prio


class ActorExecutor(Invoker):
    """The actor's dispatcher: mailbox, concurrency limits, streams and topic deliveries."""

    def __init__(
        self,
        server: RpcServer,
        instance: Any,
        label: str,
        *,
        mailbox_size: int = 10_000,
        overflow: str = "block",
        max_concurrency: int = 1,
        max_async: int = 1000,
        topic_backlog: int = 10_000,
        priority: int = DEFAULT_PRIORITY,
        mailbox_policy: str = "priority",
        aging: float = DEFAULT_AGING,
        flood_share: float = DEFAULT_FLOOD_SHARE,
        goal: Callable[[Any, Any, int], int] | None = None,
    ) -> None:
        self.priority = priority
        self.goal = goal or default_goal
        self._mailbox_args = (mailbox_policy, aging, flood_share)
        self.lookup = public_method_resolver(instance)
        super().__init__(server, self.lookup, label=label)  # type: ignore[arg-type]
        self.instance = instance
        self.loop = server.loop
        self.mailbox = self.make_mailbox(mailbox_size)
        self.overflow = overflow
        self.max_sync = max(1, max_concurrency)
        self.pool = (
            ThreadPoolExecutor(max_concurrency, thread_name_prefix="llmos-actor") if max_concurrency > 1 else None
        )
        self.max_async = max_async
        self.busy_sync = 0
        self.busy_async = 0
        self.streams: dict[tuple[bytes, int], Stream] = {}
        self.topic_backlog = topic_backlog
        self.topic_queued = 0
        #: Called once the topic backlog is half empty again (the subscription reader waits on it).
        self.on_topic_room: Callable[[], None] | None = None
        self.calls = 0
        self.done_tells = 0
        self.stopping = False
        self._active: dict[tuple[bytes, int], asyncio.Future] = {}
        self._changed: asyncio.Event | None = None  # set on every completion while draining
        self._pump_scheduled = False
        self._pump_reads = True
        self._watching = False
        server.after_read = self._pump_after_read

    def make_mailbox(self, size: int) -> Mailbox:
        policy, aging, flood_share = self._mailbox_args
        cls = FifoMailbox if policy == "fifo" else Mailbox
        return cls(size, default_priority=self.priority, aging=aging, flood_share=flood_share)

    def level_of(self, req: Request) -> int | None:
        """The mailbox level for a request: its priority, or its goal's (objective, deadline)."""
        prio = req.prio
        head = req.head
        objective = head.get("objective")
        if objective is None and req.deadline is None:
            return prio
        time_left = None if req.deadline is None else req.deadline - time.monotonic()
        base = self.priority if prio is None else prio
        try:
            return int(self.goal(objective if type(objective) in (int, float) else None, time_left, base))
        except Exception:
            log.exception("goal function failed; using priority %s", base)
            return base

    # ------------------------------------------------------------------ intake
    def __call__(self, req: Request) -> None:
        kind = req.kind
        if kind not in _PLAIN_KINDS:
            if kind == P.CANCEL:
                self.cancel(req.ident, req.id)
                return
            if kind == P.CREDIT:
                self.add_credit(req.ident, req.id, req.args[0] if req.args else 0)
                return
        if self.stopping:
            if kind != P.TELL:
                self.fail(req, ActorDiedError(f"{self.label} is stopping"), traceback=False)
            return
        mailbox = self.mailbox
        full = len(mailbox) >= mailbox.size
        if full and self.overflow == "drop":
            self.stats["dropped"] = self.stats.get("dropped", 0) + 1
            if kind != P.TELL:
                self.fail(req, MailboxFull(f"{self.label}'s mailbox is full (overflow policy 'drop')"), traceback=False)
            return
        self.calls += 1
        if req.deadline is None and "objective" not in req.head:
            mailbox.put(req, req.prio, req.ident)
        else:
            mailbox.put(req, self.level_of(req), req.ident)
        if len(mailbox) >= mailbox.size and self.overflow != "drop":
            self.server.pause_reading()
        if not self._pump_scheduled and not self.server.in_callback:
            self._pump_scheduled = True
            self.loop.call_soon(self.pump)

    def deliver_topic(self, fn: Callable[..., Any], kind: str, topic: str, items: list) -> None:
        """Messages from a subscription: queued unless the backlog is full (then dropped, counted)."""
        if self.stopping:
            return
        if self.topic_queued >= self.topic_backlog:
            self.stats["topic_drops"] = self.stats.get("topic_drops", 0) + len(items)
            return
        self.topic_queued += len(items)
        put = self.mailbox.put
        if len(items) <= TOPIC_CHUNK:
            put(TopicDelivery(fn, kind, topic, items), None, None)
        else:
            for start in range(0, len(items), TOPIC_CHUNK):
                put(TopicDelivery(fn, kind, topic, items[start : start + TOPIC_CHUNK]), None, None)
        self.schedule_pump()

    def _pump_after_read(self) -> None:
        self._pump_reads = False  # the server has just read the socket
        self.pump()

    def schedule_pump(self) -> None:
        if not self._pump_scheduled:
            self._pump_scheduled = True
            self.loop.call_soon(self.pump)

    # ------------------------------------------------------------------ running
    def pump(self) -> None:
        """Start queued work while there is capacity, for at most one slice of inline time.

        The common case (a plain method on the main thread) is inlined here: this loop is
        the actor's per-message cost.
        """
        self._pump_scheduled = False
        if self._pump_reads:
            self.server.intake()  # see what arrived while we worked: it may outrank the queue
        self._pump_reads = True
        mailbox = self.mailbox
        lookup = self.lookup
        monotonic = time.monotonic
        now = monotonic()
        end = now + PUMP_SLICE
        look_at = now + INTAKE_EVERY
        inline = self.pool is None
        server = self.server
        base = self.priority
        while len(mailbox):
            if now >= look_at:
                look_at = now + INTAKE_EVERY
                if server.has_input():
                    server.intake()  # let newly arrived (maybe urgent) work compete
            entry = mailbox.peek()
            if type(entry) is Request and inline and entry.kind != P.STREAM:
                found = lookup(entry.method)
                if found is not None and found[1] == SYNC:
                    if self.busy_sync:
                        break  # a plain method is running (reply-later awaits do not count)
                    mailbox.pop()
                    if entry.deadline is None or not self.expired(entry):
                        self._run_inline(entry, found[0])
                        if entry.prio is not None and entry.prio > base:
                            server.flush()  # an urgent caller does not wait for the slice's end
                    now = monotonic()
                    if now > end:
                        self.schedule_pump()
                        break
                    continue
            if not self._has_capacity(entry):
                break
            mailbox.pop()
            self._start(entry)
            now = monotonic()
            if now > end:
                self.schedule_pump()
                break
        if self.server.paused and mailbox.low and not self.stopping:
            self.server.resume_reading()

    def _has_capacity(self, entry: Any) -> bool:
        if type(entry) is Request:
            found = self.lookup(entry.method)
            kind = found[1] if found else SYNC
            if kind in (ASYNC, AGEN):
                return self.busy_async < self.max_async
            return self.busy_sync < self.max_sync
        if type(entry) is TopicDelivery and entry.kind == ASYNC:
            return self.busy_async < self.max_async
        return self.busy_sync < self.max_sync

    def _start(self, entry: Any) -> None:
        if type(entry) is Request:
            self._start_request(entry)
        elif type(entry) is StreamTurn:
            self._stream_turn(entry.stream)
        else:
            self._deliver(entry)

    def _start_request(self, req: Request) -> None:
        found = self.lookup(req.method)
        if found is None:
            self.fail(req, MethodNotFound(f"{self.label} has no public method {req.method!r}"), traceback=False)
            return
        fn, kind = found
        if req.deadline is not None and self.expired(req):
            return
        if req.kind == P.STREAM:
            self._start_stream(req, fn, kind)
            return
        if kind in (GEN, AGEN):
            self.fail(req, LlmosError(f"{req.method!r} is a generator: call it with ref.stream()"), traceback=False)
            return
        if kind == ASYNC:
            self._run_async(req, fn)
        elif self.pool is not None:
            self._run_in_pool(req, fn)
        else:
            self._run_inline(req, fn)

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
        fut = self.loop.run_in_executor(self.pool, call)

        def done(f: asyncio.Future) -> None:
            self.busy_sync -= 1
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
        try:
            try:
                coro = fn(*req.args, **req.kwargs)
            except Exception as exc:
                self.fail(req, exc)
                return
            self._track_async(req, coro)
        finally:
            CALL_LEVEL.reset(token)

    def _track_async(self, req: Request, awaitable: Any) -> None:
        self.busy_async += 1
        task = self.await_result(req, awaitable)
        self._active[(req.ident, req.id)] = task

        def release(_: Any) -> None:
            self.busy_async -= 1
            self._active.pop((req.ident, req.id), None)
            self.schedule_pump()

        task.add_done_callback(release)

    # ------------------------------------------------------------------ topics
    def _deliver(self, entry: TopicDelivery) -> None:
        self.topic_queued -= len(entry.items)
        if self.on_topic_room is not None and self.topic_queued <= self.topic_backlog // 2:
            resume, self.on_topic_room = self.on_topic_room, None
            self.loop.call_soon(resume)
        fn, topic = entry.fn, entry.topic
        if entry.kind == ASYNC:

            async def run_all() -> None:
                for item in entry.items:
                    try:
                        await fn(topic, item)
                    except Exception:
                        log.exception("topic handler %s failed on %r", getattr(fn, "__name__", fn), topic)

            self.busy_async += 1
            task = self.loop.create_task(run_all())
            task.add_done_callback(lambda _: self._async_done())
            return
        for item in entry.items:
            try:
                fn(topic, item)
            except Exception:
                log.exception("topic handler %s failed on %r", getattr(fn, "__name__", fn), topic)
        self.stats["delivered"] = self.stats.get("delivered", 0) + len(entry.items)

    def _async_done(self) -> None:
        self.busy_async -= 1
        self.schedule_pump()
        if self._changed is not None:
            self._changed.set()

    # ------------------------------------------------------------------ streams
    def _start_stream(self, req: Request, fn: Callable[..., Any], kind: str) -> None:
        if kind not in (GEN, AGEN):
            # A plain method may have a streaming twin, ``_stream_<name>`` (LLM.generate does).
            twin = getattr(self.instance, "_stream_" + req.method, None)
            kind = classify(twin) if callable(twin) else SYNC
            if kind not in (GEN, AGEN):
                self.fail(req, LlmosError(f"{req.method!r} is not a generator method: use call()"), traceback=False)
                return
            fn = twin  # type: ignore[assignment]
        level = self.level_of(req)
        level = self.priority if level is None else level
        token = CALL_LEVEL.set(level)  # seen by the generator's body (an async one's task copies it)
        try:
            gen = fn(*req.args, **req.kwargs)
        except Exception as exc:
            self.fail(req, exc)
            return
        finally:
            CALL_LEVEL.reset(token)
        credit = req.head.get("credit", DEFAULT_CREDIT)
        credit = credit if type(credit) is int and credit > 0 else DEFAULT_CREDIT
        stream = Stream(req, gen, kind, credit, level)
        self.streams[(req.ident, req.id)] = stream
        if kind == AGEN:
            stream.wakeup = asyncio.Event()
            self.busy_async += 1
            token = CALL_LEVEL.set(level)
            stream.task = self.loop.create_task(self._run_async_stream(stream))
            CALL_LEVEL.reset(token)
        else:
            self._stream_turn(stream)

    def _stream_turn(self, stream: Stream) -> None:
        """Run a sync generator until its quantum ends, its credit runs out, or it finishes."""
        if stream.cancelled:
            return
        req = stream.req
        server = self.server
        end = time.monotonic() + STREAM_QUANTUM
        used_quantum = False
        self.busy_sync += 1
        stream.running = True
        try:
            while stream.credit > 0:
                if server.gone(req.ident):
                    self._drop_stream(stream, "caller went away")
                    return
                try:
                    item = next(stream.gen)
                except StopIteration:
                    self._end_stream(stream)
                    return
                except Exception as exc:
                    self.streams.pop((req.ident, req.id), None)
                    self.fail(req, exc)
                    return
                stream.credit -= 1
                stream.items += 1
                server.reply(req.ident, req.id, P.ITEM, item)
                if time.monotonic() > end:
                    used_quantum = True
                    break
        finally:
            stream.running = False
            self.busy_sync -= 1
        if stream.cancelled:
            stream.gen.close()
        elif stream.credit > 0:
            if used_quantum and stream.level:
                stream.level -= 1  # MLFQ feedback: a long generation sinks; aging lifts it back
            self.mailbox.put(StreamTurn(stream), stream.level, None)  # back of the line: others get a turn
            self.schedule_pump()
        else:
            stream.parked = True
            self._watch_parked()

    async def _run_async_stream(self, stream: Stream) -> None:
        req = stream.req
        agen = stream.gen
        assert stream.wakeup is not None
        try:
            while True:
                while stream.credit <= 0:
                    stream.wakeup.clear()
                    self._watch_parked()
                    await stream.wakeup.wait()
                if self.server.gone(req.ident):
                    self.streams.pop((req.ident, req.id), None)
                    await agen.aclose()  # its finally blocks release what it holds
                    return
                try:
                    item = await agen.__anext__()
                except StopAsyncIteration:
                    self._end_stream(stream)
                    return
                stream.credit -= 1
                stream.items += 1
                self.server.reply(req.ident, req.id, P.ITEM, item)
        except asyncio.CancelledError:
            await agen.aclose()
        except Exception as exc:
            self.streams.pop((req.ident, req.id), None)
            self.fail(req, exc)
        finally:
            self._async_done()

    def _end_stream(self, stream: Stream) -> None:
        req = stream.req
        self.streams.pop((req.ident, req.id), None)
        self.stats["done"] = self.stats.get("done", 0) + 1
        self.server.reply(req.ident, req.id, P.END, stream.items)

    def _drop_stream(self, stream: Stream, why: str) -> None:
        stream.cancelled = True
        self.streams.pop((stream.req.ident, stream.req.id), None)
        self.stats["streams_cancelled"] = self.stats.get("streams_cancelled", 0) + 1
        log.info("stream %r cancelled: %s", stream.req.method, why)
        if stream.kind == AGEN:
            if stream.task is not None:
                stream.task.cancel()
        elif not stream.running:
            stream.gen.close()

    def _watch_parked(self) -> None:
        """Parked streams send nothing, so nothing tells us their caller died: ask now and then."""
        if not self._watching:
            self._watching = True
            self.loop.call_later(PARKED_CHECK, self._check_parked)

    def _check_parked(self) -> None:
        self._watching = False
        parked = [s for s in self.streams.values() if s.parked or (s.kind == AGEN and s.credit <= 0)]
        for stream in parked:
            if not self.server.ping(stream.req.ident):
                self._drop_stream(stream, "caller went away")
        if any(s.parked or (s.kind == AGEN and s.credit <= 0) for s in self.streams.values()):
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
            self.mailbox.put(StreamTurn(stream), stream.level, None)
            self.schedule_pump()

    def cancel(self, ident: bytes, msg_id: int) -> None:
        """The caller gave up on a request: stop its stream, or drop it if it has not started."""
        stream = self.streams.get((ident, msg_id))
        if stream is not None:
            self._drop_stream(stream, "the caller closed it")
            return
        removed = self.mailbox.remove(lambda e: type(e) is Request and e.ident == ident and e.id == msg_id)
        if removed:
            self.stats["cancelled"] = self.stats.get("cancelled", 0) + 1
            return
        task = self._active.get((ident, msg_id))
        if task is not None:
            task.cancel()

    # ------------------------------------------------------------------ stopping
    def succeed(self, req: Request, value: Any) -> None:
        super().succeed(req, value)
        if self._changed is not None:
            self._changed.set()

    def fail(self, req: Request, exc: BaseException, *, traceback: bool = True) -> None:
        super().fail(req, exc, traceback=traceback)
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
        for stream in list(self.streams.values()):
            self._drop_stream(stream, "actor stopping")
        cancelled = list(self._active.values())
        for task in cancelled:
            task.cancel()
        if cancelled:  # let them reply (ActorDiedError, see _finished) before the socket closes
            await asyncio.wait(cancelled, timeout=0.5)
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)

    def _finished(self, req: Request, task: asyncio.Future) -> None:
        if self.stopping and task.cancelled():  # cut off by a stop: to the caller, the actor died
            self.tasks.discard(task)
            self.fail(req, ActorDiedError(f"{self.label} stopped while running {req.method!r}"), traceback=False)
            return
        super()._finished(req, task)

    def snapshot(self) -> dict:
        """Counters for heartbeats (``llmos ps``)."""
        stats = self.stats
        return {
            "calls": self.calls,
            "done": stats.get("done", 0) + self.done_tells,
            "failed": stats.get("failed", 0),
            "expired": stats.get("expired", 0),
            "malformed": stats.get("malformed", 0),
            "dropped": stats.get("dropped", 0),
            "cancelled": stats.get("cancelled", 0),
            "topic_drops": stats.get("topic_drops", 0),
            "delivered": stats.get("delivered", 0),
            "queued": len(self.mailbox),
            "active": self.busy_sync + self.busy_async,
            "streams": len(self.streams),
            **self.mailbox.snapshot(),
        }
