"""Running requests against the actor instance: which methods are callable, when and how they run.

Requests go into the mailbox as the socket delivers them; ``pump`` takes them out
in order while there is capacity:

- plain methods run on the actor's main thread, one at a time (``max_concurrency``
  of 1), or on that many threads;
- ``async def`` methods run as tasks on the actor's loop, at most ``max_async`` at once;
- generator methods stream, in turns of one quantum each (``stream_runner``);
- topic deliveries call the subscribed method once per message.

The pump runs inline work for at most ``slice`` seconds before it yields to the
loop, so the socket is read (and higher-priority work seen) while a backlog drains.

How a started request runs is ``run_modes``; stopping (drain, cut off) is ``draining``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from bisect import bisect_left as bucket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .._clock import LoopClock
from .._rpc.invoke import Invoker
from .._rpc.requests import Request
from .._rpc.server import RpcServer
from .._rpc.tracing import HEADER as TRACE_HEADER
from .._wire import protocol as P
from ..errors import ActorDiedError, LlmosError, MailboxFull, MethodNotFound
from .draining import Draining
from .methods import AGEN, ASYNC, GEN, SYNC, TopicDelivery, classify, public_method_resolver
from .run_modes import RunModes
from .settings import ExecutorSettings
from .stream_runner import StreamRunner, StreamTurn
from .timings import BUCKETS, SUM, CallTimings

log = logging.getLogger(__name__)

#: Seconds of inline work per pump before yielding to the loop (so the socket is read and
#: higher-priority work that arrived meanwhile goes next).
PUMP_SLICE = 0.0005
#: Within a slice, seconds between looks at the socket (an EVENTS query: well under a
#: microsecond), so an urgent call that arrived waits for at most one running method.
INTAKE_EVERY = 0.0002


_PLAIN_KINDS = frozenset({P.CALL, P.TELL, P.STREAM})


class ActorExecutor(Draining, RunModes, Invoker):
    """The actor's dispatcher: mailbox, concurrency limits, streams and topic deliveries."""

    def __init__(
        self, server: RpcServer, instance: Any, label: str, settings: ExecutorSettings = ExecutorSettings()
    ) -> None:
        self.settings = settings
        self.priority = settings.priority
        self.lookup = public_method_resolver(instance)
        super().__init__(server, self.lookup, label=label)  # type: ignore[arg-type]
        self.instance = instance
        self.loop = server.loop
        self.mailbox = settings.make_mailbox()
        self.overflow = settings.overflow
        max_concurrency = settings.max_concurrency
        self.max_sync = max(1, max_concurrency)
        self.threads = (
            ThreadPoolExecutor(max_concurrency, thread_name_prefix="llmos-actor") if max_concurrency > 1 else None
        )
        self.max_async = settings.max_async
        self.busy_sync = 0
        self.busy_async = 0
        self.streams = StreamRunner(self, server, LoopClock(self.loop), loop=self.loop)
        self.topic_backlog = settings.topic_backlog
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
        #: Queue-wait and run-time histograms, when the daemon serves metrics (else None: no cost).
        self.timings: CallTimings | None = None
        #: Server spans of traced calls ([tracing] enabled), else None: no cost.
        self.tracer: Any = None
        self.span_prefix = "actor"  # span names: "<actor name>.<method>"
        server.after_read = self._pump_after_read

    def level_of(self, req: Request) -> int | None:
        return self.settings.level_of(req, time.monotonic())

    # ------------------------------------------------------------------ intake
    def __call__(self, req: Request) -> None:
        kind = req.kind
        if kind not in _PLAIN_KINDS:
            if kind == P.CANCEL:
                self.cancel(req.ident, req.id)
                return
            if kind == P.CREDIT:
                self.streams.add_credit(req.ident, req.id, req.args[0] if req.args else 0)
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
        for piece in TopicDelivery.pieces(fn, kind, topic, items):
            self.mailbox.put(piece, None, None)
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
        inline = self.threads is None
        server = self.server
        base = self.priority
        timings = self.timings
        if timings is not None:
            waits, runs = timings.wait.counts, timings.run.counts
        tracer = self.tracer
        while len(mailbox):
            if now >= look_at:
                look_at = now + INTAKE_EVERY
                if server.has_input():
                    server.intake()  # let newly arrived (maybe urgent) work compete
                    now = monotonic()  # (what it queued came after the last reading: queue waits stay >= 0)
            entry = mailbox.peek()
            if type(entry) is Request and inline and entry.kind != P.STREAM:
                found = lookup(entry.method)
                if found is not None and found[1] == SYNC:
                    if self.busy_sync:
                        break  # a plain method is running (reply-later awaits do not count)
                    mailbox.pop()
                    if entry.deadline is None or not self.expired(entry):
                        start = now
                        if tracer is None or TRACE_HEADER not in entry.head:  # sampled calls carry one
                            self._run_inline(entry, found[0])
                        else:
                            self._run_traced(entry, found[0], SYNC)
                        if entry.prio is not None and entry.prio > base:
                            server.flush()  # an urgent caller does not wait for the slice's end
                        now = monotonic()
                        if timings is not None:  # Histogram.observe, inlined: the per-call cost of metrics
                            waited, ran = start - mailbox.enqueued_at, now - start
                            waits[bucket(BUCKETS, waited)] += 1
                            waits[SUM] += waited
                            runs[bucket(BUCKETS, ran)] += 1
                            runs[SUM] += ran
                    else:
                        now = monotonic()
                    if now > end:
                        self.schedule_pump()
                        break
                    continue
            if not self._has_capacity(entry):
                break
            mailbox.pop()
            if timings is not None and type(entry) is Request:
                timings.wait.observe(monotonic() - mailbox.enqueued_at)
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
            self.streams.turn(entry.stream)
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
            level = self.level_of(req)
            if kind not in (GEN, AGEN):
                # A plain method may have a streaming twin, ``_stream_<name>`` (LLM.generate does).
                twin = getattr(self.instance, "_stream_" + req.method, None)
                if callable(twin):
                    fn, kind = twin, classify(twin)
            self.streams.start(req, fn, kind, self.priority if level is None else level)
            return
        if kind in (GEN, AGEN):
            self.fail(req, LlmosError(f"{req.method!r} is a generator: call it with ref.stream()"), traceback=False)
            return
        if self.tracer is not None and TRACE_HEADER in req.head:
            self._run_traced(req, fn, kind)
        else:
            self._run(req, fn, kind)

    # ------------------------------------------------------------------ topics
    def _deliver(self, entry: TopicDelivery) -> None:
        self.topic_queued -= len(entry.items)
        if self.on_topic_room is not None and self.topic_queued <= self.topic_backlog // 2:
            resume, self.on_topic_room = self.on_topic_room, None
            self.loop.call_soon(resume)
        if entry.kind == ASYNC:
            self.busy_async += 1
            task = self.loop.create_task(entry.run_async())
            task.add_done_callback(lambda _: self.async_done())
            return
        entry.run()
        self.stats["delivered"] = self.stats.get("delivered", 0) + len(entry.items)

    def async_done(self) -> None:
        self.busy_async -= 1
        self.schedule_pump()
        if self._changed is not None:
            self._changed.set()

    # ------------------------------------------------------------------ streams
    def requeue(self, turn: StreamTurn) -> None:
        """A stream's next turn goes in the mailbox behind what waits (the stream runner's host)."""
        self.mailbox.put(turn, turn.prio, None)
        self.schedule_pump()

    def cancel(self, ident: bytes, msg_id: int) -> None:
        """The caller gave up on a request: stop its stream, or drop it if it has not started."""
        if self.streams.cancel(ident, msg_id):
            return
        removed = self.mailbox.remove(lambda e: type(e) is Request and e.ident == ident and e.id == msg_id)
        if removed:
            self.stats["cancelled"] = self.stats.get("cancelled", 0) + 1
            return
        task = self._active.get((ident, msg_id))
        if task is not None:
            task.cancel()

    # ------------------------------------------------------------------ reporting
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
