"""OpenTelemetry spans per call, with W3C trace context carried in the call header.

Off unless the config has ``[tracing] enabled = true`` (and ``opentelemetry-sdk`` is
installed: the ``tracing`` extra). Off, the call path pays one attribute check
(``ClientCore.tracer is None``, ``ActorExecutor.tracer is None``).

On: a call made inside a traced call (or inside the application's own current span)
carries that span's ``traceparent`` in the header under ``"tp"``; the actor runs the
method inside a server span that is its child, so nested calls from there continue
the trace: client -> agent -> tool actor -> LLM device is one trace. A call made
outside any span starts a new trace with probability ``sample_ratio``: the decision is
made once, at the root, and only sampled calls carry context or build a span.

What an unsampled call costs is the point of this module's shape: one read of
OpenTelemetry's context variable (empty outside any span) and one decrement of a
countdown to the next sampled call. The countdown's gaps are drawn from the geometric
distribution, so each call is sampled with probability ``sample_ratio``, independently,
as a ``random() < ratio`` per call would be, without drawing a number per call.
The actor side tests one header key. Sampled roots get a client span that ends with
the call's outcome (``ClientCore.roots`` holds it until then). A sampled span costs its
call a few microseconds: it is recorded as a tuple, and built and exported off the call
path (``spans``).
"""

from __future__ import annotations

import logging
import math
import random
from typing import Any

log = logging.getLogger(__name__)

HEADER = "tp"
#: A W3C traceparent (version 00) is 55 characters: ``00-<32 hex trace id>-<16 hex span id>-<2 hex flags>``.
MAX_TRACEPARENT = 55
EXPORTERS = ("otlp", "console", "memory")
DEFAULTS: dict[str, Any] = {
    "enabled": False,
    "sample_ratio": 0.01,
    "exporter": "otlp",
    "endpoint": None,
    "service_name": "llmos",
}
#: The countdown of a ratio of 0: never reaches zero.
_NEVER = 1 << 62

_tracers: dict[tuple, CallTracer] = {}  # one per process and settings: spans share one provider


def tracing_settings(extra: Any) -> dict[str, Any]:
    """The ``[tracing]`` section, checked (raises ``ValueError`` naming the bad key)."""
    section = dict(extra.get("tracing") or {}) if hasattr(extra, "get") else {}
    unknown = set(section) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown [tracing] keys: {', '.join(sorted(unknown))} (known: {', '.join(DEFAULTS)})")
    out = {**DEFAULTS, **section}
    if not isinstance(out["enabled"], bool):
        raise ValueError("[tracing] enabled must be true or false")
    ratio = out["sample_ratio"]
    if not isinstance(ratio, (int, float)) or isinstance(ratio, bool) or not 0.0 <= ratio <= 1.0:
        raise ValueError(f"[tracing] sample_ratio must be a number from 0 to 1, not {ratio!r}")
    if out["exporter"] not in EXPORTERS:
        raise ValueError(f"[tracing] exporter must be one of {EXPORTERS}, not {out['exporter']!r}")
    return out


def tracer_for(config: Any) -> CallTracer | None:
    """This process's call tracer for ``config``, or None when tracing is off (or cannot be on)."""
    extra = getattr(config, "extra", None) or {}
    section = extra.get("tracing") if hasattr(extra, "get") else None
    if not section or not section.get("enabled"):
        return None
    try:
        settings = tracing_settings(extra)
    except ValueError as exc:
        log.warning("tracing stays off: %s", exc)
        return None
    key = tuple(sorted((k, str(v)) for k, v in settings.items()))
    tracer = _tracers.get(key)
    if tracer is None:
        try:
            tracer = _tracers[key] = CallTracer(settings)
        except ImportError as exc:
            log.warning("tracing stays off: %s (install the 'tracing' extra)", exc)
            return None
    return tracer


class Countdown:
    """Which calls start a trace: every call with probability ``ratio``, decided by a countdown.

    Per call, ``CallTracer.outgoing`` decrements ``left`` and compares it (inlined there: it is
    the whole cost of an unsampled call); the next gap is drawn only when the countdown runs
    out (a geometric variate: the number of Bernoulli trials up to the first success). Threads
    racing on the counter can at worst sample one call more.
    """

    __slots__ = ("_log_miss", "left", "ratio")

    def __init__(self, ratio: float) -> None:
        self.ratio = ratio
        self._log_miss = math.log1p(-ratio) if 0.0 < ratio < 1.0 else 0.0
        self.left = self.gap()

    def gap(self) -> int:
        """Calls until the next sampled one (1: the next call)."""
        if self.ratio >= 1.0:
            return 1
        if self.ratio <= 0.0:
            return _NEVER
        return 1 + int(math.log(1.0 - random.random()) / self._log_miss)


class CallTracer:
    """Creates the spans and reads/writes the header field (one per process).

    Spans are ``spans.LightSpan``s: the call path records them as tuples, and a
    ``spans.SpanRecorder`` (a processor of ``provider``) builds the SDK's spans and exports
    them in batches from its own thread.
    """

    def __init__(self, settings: dict) -> None:
        from opentelemetry import context
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.trace.propagation import _SPAN_KEY, set_span_in_context

        from . import spans

        self.ratio = float(settings["sample_ratio"])
        self.sampling = Countdown(self.ratio)
        self._context = context
        self.provider = TracerProvider(resource=Resource.create({"service.name": settings["service_name"]}))
        self.memory: Any = None
        exporter = settings["exporter"]
        if exporter == "memory":
            self.memory = out = _memory_exporter(self)
        elif exporter == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            out = ConsoleSpanExporter()
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            endpoint = settings["endpoint"]
            out = OTLPSpanExporter(endpoint=endpoint) if endpoint else OTLPSpanExporter()
        self.recorder = spans.SpanRecorder(out, self.provider.resource, "llmos_actors")
        self.provider.add_span_processor(self.recorder)
        self._span = spans.LightSpan
        self._client_kind, self._server_kind = spans.CLIENT, spans.SERVER
        self._ids = random.getrandbits
        # The current OpenTelemetry context (a dict, empty outside any span) in one C call when the
        # runtime context is the default contextvars one; else through the public API.
        var = getattr(getattr(context, "_RUNTIME_CONTEXT", None), "_current_context", None)
        self._current_context = var.get if var is not None and hasattr(var, "get") else context.get_current
        self._span_key = _SPAN_KEY
        self._set_span = set_span_in_context

    @property
    def dropped(self) -> int:
        """Spans dropped because the export buffer was full."""
        return self.recorder.dropped

    # ------------------------------------------------------------------ caller side
    def outgoing(self, method: str, extra: dict | None, msg_id: int = 0, roots: dict | None = None) -> dict | None:
        """The header extras of a call: with ``"tp"`` if it belongs to a sampled trace.

        A call outside any span that is sampled starts a trace with a client span
        ``"call <method>"``: put in ``roots[msg_id]`` to end with the reply (``end``), or
        ended now when ``roots`` is None (tells and streams, which wait for no reply here).
        """
        ctx = self._current_context()
        span: Any = ctx.get(self._span_key) if ctx else None
        if span is None:  # outside any span (the common case): is this call sampled?
            sampling = self.sampling
            sampling.left -= 1
            if sampling.left > 0:
                return extra
            sampling.left = sampling.gap()
            ids = self._ids
            root = self._span(self.recorder, f"call {method}", self._client_kind, ids(128) or 1, ids(64) or 1, 0)
            if roots is None:
                root.end()
            else:
                roots[msg_id] = root
            trace_id, span_id = root.trace_id, root.span_id
        elif type(span) is self._span:  # inside one of our server spans
            trace_id, span_id = span.trace_id, span.span_id
        else:  # inside the application's own span
            sc = span.get_span_context()
            if not sc.is_valid or not sc.trace_flags.sampled:
                return extra
            trace_id, span_id = sc.trace_id, sc.span_id
        tp = f"00-{trace_id:032x}-{span_id:016x}-01"
        return {**extra, HEADER: tp} if extra else {HEADER: tp}

    @staticmethod
    def end(span: Any, error: BaseException | None) -> None:
        """End a root client span with its call's outcome."""
        if error is not None:
            span.error = f"{type(error).__name__}: {error}"[:200]
        span.end()

    def end_with(self, span: Any, fut: Any) -> None:
        """``end`` as a done-callback of the call's future."""
        if fut.cancelled():
            span.error = "the call was cancelled"
            span.end()
        else:
            self.end(span, fut.exception())

    # ------------------------------------------------------------------ actor side
    def enter(self, head: dict, actor: str, method: str) -> tuple[Any, Any]:
        """Start the server span ``actor.method`` of a request whose header carries a traceparent,
        and make it current.

        Returns ``(span, token)``; ``(None, None)`` when the request is not traced.
        """
        parent = self._parent(head.get(HEADER))
        if parent is None:
            return None, None
        trace_id, parent_id = parent
        name = f"{actor}.{method}"
        span = self._span(self.recorder, name, self._server_kind, trace_id, self._ids(64) or 1, parent_id)
        token = self._context.attach(self._set_span(span))
        return span, token

    @staticmethod
    def _parent(tp: Any) -> tuple[int, int] | None:
        """``(trace id, span id)`` of a sampled W3C traceparent (version 00), or None for anything else."""
        if type(tp) is not str or len(tp) != MAX_TRACEPARENT or not tp.startswith("00-") or not tp.endswith("-01"):
            return None
        if tp[35] != "-" or tp[52] != "-":
            return None
        try:
            trace_id, span_id = int(tp[3:35], 16), int(tp[36:52], 16)
        except ValueError:
            return None
        if not trace_id or not span_id:
            return None
        return trace_id, span_id

    def leave(self, token: Any) -> None:
        self._context.detach(token)

    @staticmethod
    def fail(span: Any, what: str) -> None:
        span.error = what

    def finished_spans(self) -> list[dict]:
        """Spans the ``memory`` exporter holds, as plain dicts (for tests and debugging)."""
        if self.memory is None:
            return []
        out = []
        for s in self.memory.get_finished_spans():
            ctx = s.context
            out.append(
                {
                    "name": s.name,
                    "trace_id": f"{ctx.trace_id:032x}",
                    "span_id": f"{ctx.span_id:016x}",
                    "parent_id": f"{s.parent.span_id:016x}" if s.parent is not None else None,
                    "kind": s.kind.name,
                    "status": s.status.status_code.name,
                    "attributes": dict(s.attributes or {}),
                    "start": s.start_time / 1e9 if s.start_time else None,
                    "duration": (s.end_time - s.start_time) / 1e9 if s.end_time and s.start_time else None,
                }
            )
        return out

    def shutdown(self) -> None:
        """Flush and stop the exporter (the process is about to exit)."""
        try:
            self.provider.shutdown()
        except Exception:
            log.exception("tracing shutdown failed")


def _memory_exporter(tracer: CallTracer) -> Any:
    """An in-memory exporter whose readers first see what ``tracer`` still buffers."""
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    class FlushedMemoryExporter(InMemorySpanExporter):
        def get_finished_spans(self) -> Any:
            tracer.recorder.flush()
            return super().get_finished_spans()

    return FlushedMemoryExporter()


def finished_spans() -> list[dict]:
    """Every span this process's ``memory`` exporters hold (see ``CallTracer.finished_spans``)."""
    out: list[dict] = []
    for tracer in _tracers.values():
        out.extend(tracer.finished_spans())
    return out
