"""OpenTelemetry spans per call, with W3C trace context carried in the call header.

Off unless the config has ``[tracing] enabled = true`` (and ``opentelemetry-sdk`` is
installed: the ``tracing`` extra). Off, the call path pays one attribute check
(``ClientCore.tracer is None``, ``ActorExecutor.tracer is None``).

On: a call made inside a traced call (or inside the application's own current span)
carries that span's ``traceparent`` in the header under ``"tp"``; the actor runs the
method inside a server span that is its child, so nested calls from there continue
the trace: client -> agent -> tool actor -> LLM device is one trace. A call made
outside any span starts a new trace with probability ``sample_ratio`` (the decision
is made once, at the root; unsampled calls carry nothing). The synchronous client's plain
``tell``s and ``ask``s without options take a fast path that carries no trace context.
"""

from __future__ import annotations

import logging
import random
from typing import Any

log = logging.getLogger(__name__)

HEADER = "tp"
#: A W3C traceparent is 55 characters; anything longer in a header is ignored.
MAX_TRACEPARENT = 55
EXPORTERS = ("otlp", "console", "memory")
DEFAULTS: dict[str, Any] = {
    "enabled": False,
    "sample_ratio": 0.01,
    "exporter": "otlp",
    "endpoint": None,
    "service_name": "llmos",
}

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


class CallTracer:
    """Creates the spans and reads/writes the header field (one per process)."""

    def __init__(self, settings: dict) -> None:
        from opentelemetry import context, trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.ratio = float(settings["sample_ratio"])
        self._trace = trace
        self._context = context
        self._propagator = TraceContextTextMapPropagator()
        self.provider = TracerProvider(resource=Resource.create({"service.name": settings["service_name"]}))
        self.memory: Any = None
        exporter = settings["exporter"]
        if exporter == "memory":
            from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

            self.memory = InMemorySpanExporter()
            self.provider.add_span_processor(SimpleSpanProcessor(self.memory))
        elif exporter == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            self.provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            endpoint = settings["endpoint"]
            otlp = OTLPSpanExporter(endpoint=endpoint) if endpoint else OTLPSpanExporter()
            self.provider.add_span_processor(BatchSpanProcessor(otlp))
        self.tracer = self.provider.get_tracer("llmos_actors")
        self._current_span = trace.get_current_span
        self._no_span = trace.INVALID_SPAN
        self._random = random.random
        self._client_kind = trace.SpanKind.CLIENT
        self._server_kind = trace.SpanKind.SERVER

    # ------------------------------------------------------------------ caller side
    def outgoing(self, method: str, extra: dict | None) -> dict | None:
        """The header extras of a call: with ``"tp"`` if it belongs to a sampled trace."""
        span = self._current_span()
        if span is self._no_span:  # outside any span (the common case): sample a new trace
            if self._random() >= self.ratio:
                return extra
            root = self.tracer.start_span(f"call {method}", kind=self._client_kind)
            root.end()  # marks where the trace began; the actor's span measures the call
            ctx = root.get_span_context()
        else:
            ctx = span.get_span_context()
            if not ctx.is_valid or not ctx.trace_flags.sampled:
                return extra
        tp = f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-01"
        return {**extra, HEADER: tp} if extra else {HEADER: tp}

    # ------------------------------------------------------------------ actor side
    def enter(self, head: dict, actor: str, method: str) -> tuple[Any, Any]:
        """Start the server span ``actor.method`` of a request whose header carries a traceparent,
        and make it current.

        Returns ``(span, token)``; ``(None, None)`` when the request is not traced.
        """
        tp = head.get(HEADER)
        if tp is None or type(tp) is not str or len(tp) > MAX_TRACEPARENT:
            return None, None
        parent = self._propagator.extract({"traceparent": tp})
        if not self._trace.get_current_span(parent).get_span_context().is_valid:
            return None, None
        span = self.tracer.start_span(
            f"{actor}.{method}", context=parent, kind=self._server_kind, attributes={"llmos.method": method}
        )
        token = self._context.attach(self._trace.set_span_in_context(span))
        return span, token

    def leave(self, token: Any) -> None:
        self._context.detach(token)

    def fail(self, span: Any, what: str) -> None:
        from opentelemetry.trace import Status, StatusCode

        span.set_status(Status(StatusCode.ERROR, what))

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


def finished_spans() -> list[dict]:
    """Every span this process's ``memory`` exporters hold (see ``CallTracer.finished_spans``)."""
    out: list[dict] = []
    for tracer in _tracers.values():
        out.extend(tracer.finished_spans())
    return out
