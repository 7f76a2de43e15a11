"""Spans that cost the call path a tuple: recorded into a bounded buffer, built and exported off it.

The OpenTelemetry SDK's own spans cost 15-50 µs of CPU each on the thread that makes them
(sampler, id generator, attribute containers, locks, the processors' ``on_start`` and
``on_end``). A traced call here pays instead for a small ``LightSpan`` (ids from
``random.getrandbits``, two ``time.time_ns()`` readings) and one ``deque.append`` of a
tuple when it ends. ``SpanRecorder``'s thread turns the tuples into the SDK's
``ReadableSpan`` objects, with the same ids, parents, times and status, and hands them to
the configured exporter in batches: the exporter sees what the SDK would have given it.

The buffer is bounded (``MAX_PENDING``): when the exporter falls behind, new spans are
dropped and counted (``SpanRecorder.dropped``), never queued without limit.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags

log = logging.getLogger(__name__)

#: Ended spans waiting for the export thread; past this, new ones are dropped (and counted).
MAX_PENDING = 8192
#: Spans per ``export`` call; a buffer this full wakes the thread early.
BATCH = 512
#: Seconds between the thread's exports when the buffer stays below ``BATCH``.
EXPORT_EVERY = 1.0

CLIENT, SERVER = 0, 1
_KINDS = (SpanKind.CLIENT, SpanKind.SERVER)
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_UNSET = Status(StatusCode.UNSET)


class LightSpan(NonRecordingSpan):
    """A span in flight: ids, start time and outcome, nothing more until it ends.

    It is an OpenTelemetry ``Span`` (non-recording, as far as the API can tell) so that it can
    be the current span: the application's own spans and calls made under it take it as their
    parent. Its ``SpanContext`` is built only when someone asks for it.
    """

    __slots__ = (
        "attributes",
        "end_ns",
        "error",
        "kind",
        "name",
        "parent_id",
        "recorder",
        "span_id",
        "start_ns",
        "trace_id",
    )

    def __init__(
        self, recorder: SpanRecorder, name: str, kind: int, trace_id: int, span_id: int, parent_id: int
    ) -> None:
        self.recorder = recorder
        self.name = name
        self.kind = kind
        self.trace_id = trace_id
        self.span_id = span_id
        self.parent_id = parent_id
        self.error: str | None = None
        self.attributes: dict | None = None
        self.end_ns = 0
        self.start_ns = time.time_ns()

    def get_span_context(self) -> SpanContext:
        return SpanContext(self.trace_id, self.span_id, is_remote=False, trace_flags=_SAMPLED)

    @property
    def parent(self) -> SpanContext | None:
        """The parent's context (it came in a call header: remote), or None for a root."""
        if not self.parent_id:
            return None
        return SpanContext(self.trace_id, self.parent_id, is_remote=True, trace_flags=_SAMPLED)

    def set_attribute(self, key: str, value: Any) -> None:
        """Attributes set by the method's own code (``trace.get_current_span()``) are exported too."""
        if self.attributes is None:
            self.attributes = {}
        self.attributes[key] = value

    def set_attributes(self, attributes: Any) -> None:
        for key, value in attributes.items():
            self.set_attribute(key, value)

    def set_status(self, status: Any, description: str | None = None) -> None:
        code = getattr(status, "status_code", status)
        if code is StatusCode.ERROR:
            self.error = getattr(status, "description", None) or description or "error"

    def end(self, end_time: int | None = None) -> None:
        """Record the span (once): a tuple into the recorder's buffer."""
        if self.end_ns:
            return
        self.end_ns = end_ns = end_time or time.time_ns()
        self.recorder.add(
            (
                self.name,
                self.kind,
                self.trace_id,
                self.span_id,
                self.parent_id,
                self.start_ns,
                end_ns,
                self.error,
                self.attributes,
            )
        )

    def __repr__(self) -> str:
        return f"LightSpan({self.name!r}, trace_id={self.trace_id:032x}, span_id={self.span_id:016x})"


class SpanRecorder(SpanProcessor):
    """The bounded buffer of ended spans and the thread that exports them.

    A ``SpanProcessor`` of the tracer's provider, so ``provider.force_flush()`` and
    ``provider.shutdown()`` (also run at exit) export what is buffered here.
    """

    def __init__(self, exporter: Any, resource: Any, scope: str) -> None:
        self.exporter = exporter
        self.resource = resource
        self.scope = InstrumentationScope(scope)
        self.pending: deque[tuple] = deque()
        self.dropped = 0
        self.exported = 0
        self._wake = threading.Event()
        self._export_lock = threading.Lock()  # one export at a time: the thread's or a flush's
        self._stopped = False
        self._pid = -1  # the process whose thread runs (a forked child starts its own)

    def add(self, record: tuple) -> None:
        """Buffer an ended span (the hot path: a length test and an append)."""
        pending = self.pending
        n = len(pending)
        if n >= MAX_PENDING:
            self.dropped += 1
            return
        pending.append(record)
        if n == BATCH - 1:
            self._wake.set()
        if self._pid != os.getpid():
            self._start()

    def _start(self) -> None:
        if self._stopped:
            return
        self._pid = os.getpid()
        self._wake = threading.Event()
        self._export_lock = threading.Lock()
        threading.Thread(target=self._run, name="llmos-span-export", daemon=True).start()

    def _run(self) -> None:
        wake = self._wake
        while not self._stopped:
            wake.wait(EXPORT_EVERY)
            wake.clear()
            self.flush()

    def flush(self) -> bool:
        """Build and export everything buffered now, in ``BATCH``-sized calls; False if one failed."""
        ok = True
        pending = self.pending
        with self._export_lock:
            while pending:
                batch = []
                while pending and len(batch) < BATCH:
                    batch.append(self._readable(pending.popleft()))
                try:
                    result = self.exporter.export(batch)
                except Exception:
                    log.exception("span export failed (%d spans lost)", len(batch))
                    ok = False
                    continue
                ok = ok and getattr(result, "name", "SUCCESS") == "SUCCESS"
                self.exported += len(batch)
        return ok

    def _readable(self, record: tuple) -> ReadableSpan:
        name, kind, trace_id, span_id, parent_id, start, end, error, attributes = record
        return ReadableSpan(
            name,
            SpanContext(trace_id, span_id, is_remote=False, trace_flags=_SAMPLED),
            SpanContext(trace_id, parent_id, is_remote=True, trace_flags=_SAMPLED) if parent_id else None,
            self.resource,
            attributes or {},
            kind=_KINDS[kind],
            status=_UNSET if error is None else Status(StatusCode.ERROR, error),
            start_time=start,
            end_time=end,
            instrumentation_scope=self.scope,
        )

    # ------------------------------------------------------------------ SpanProcessor
    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.flush()

    def shutdown(self) -> None:
        if self._stopped:  # (the provider's exit hook may come after the actor's own shutdown)
            return
        self._stopped = True
        self._wake.set()
        self.flush()
        if self.dropped:
            log.warning("%d spans were dropped: the exporter fell behind (buffer of %d)", self.dropped, MAX_PENDING)
        self.exporter.shutdown()
