"""Tracing pieces without processes: the sampling countdown and the traceparent parser."""

from __future__ import annotations

import itertools
import os
import random
import statistics

import pytest

from llmos_actors._rpc.tracing import DEFAULTS, Countdown


def sampled(ratio: float, calls: int) -> list[int]:
    """The indexes of the calls a countdown samples, counted as ``CallTracer.outgoing`` counts."""
    c = Countdown(ratio)
    hits = []
    for i in range(calls):
        c.left -= 1
        if c.left <= 0:
            c.left = c.gap()
            hits.append(i)
    return hits


@pytest.mark.parametrize("ratio", [0.01, 0.1, 0.5])
def test_the_countdown_samples_each_call_with_the_ratio(ratio: float) -> None:
    random.seed(1234)
    calls = 200_000
    hits = sampled(ratio, calls)
    expected = ratio * calls
    # Binomial(calls, ratio): five standard deviations either way.
    assert abs(len(hits) - expected) < 5 * (expected * (1 - ratio)) ** 0.5, len(hits)
    gaps = [b - a for a, b in itertools.pairwise(hits)]
    assert statistics.mean(gaps) == pytest.approx(1 / ratio, rel=0.05)
    # Geometric gaps, not a fixed period: a periodic workload cannot hide from (or always hit) the sampler.
    assert len(set(gaps)) > 10 and min(gaps) == 1


def test_a_ratio_of_one_samples_every_call_and_zero_none() -> None:
    assert sampled(1.0, 1000) == list(range(1000))
    assert sampled(0.0, 100_000) == []


otel = pytest.importorskip("opentelemetry.sdk")


@pytest.fixture(scope="module")
def tracer():
    from llmos_actors._rpc.tracing import CallTracer

    return CallTracer({**DEFAULTS, "enabled": True, "exporter": "memory", "sample_ratio": 1.0})


def test_the_traceparent_of_a_sampled_root_parses_back(tracer) -> None:
    roots: dict = {}
    extra = tracer.outgoing("m", {"objective": 1.0}, 7, roots)
    assert extra["objective"] == 1.0 and set(roots) == {7}
    tp = extra["tp"]
    assert len(tp) == 55 and tp.startswith("00-") and tp.endswith("-01")
    span, token = tracer.enter({"tp": tp}, "a", "m")
    try:
        ctx = span.get_span_context()
        assert f"{ctx.trace_id:032x}" == tp[3:35]
        assert f"{span.parent.span_id:016x}" == tp[36:52]
    finally:
        tracer.leave(token)
        span.end()
        tracer.end(roots.pop(7), None)


def test_calls_outside_any_span_start_traces_at_the_ratio() -> None:
    from llmos_actors._rpc.tracing import CallTracer

    random.seed(99)
    tracer = CallTracer({**DEFAULTS, "enabled": True, "exporter": "memory", "sample_ratio": 0.05})
    roots: dict = {}
    carried = sum("tp" in (tracer.outgoing("m", None, i, roots) or {}) for i in range(20_000))
    assert carried == len(roots)  # context travels with the sampled calls, and only with them
    assert abs(len(roots) - 1000) < 5 * (1000 * 0.95) ** 0.5, len(roots)
    for span in roots.values():
        tracer.end(span, None)
    assert len(tracer.memory.get_finished_spans()) == len(roots)


@pytest.mark.parametrize(
    "tp",
    [
        None,
        17,
        "",
        "00-" + "0" * 32 + "-" + "1" * 16 + "-01",  # zero trace id
        "00-" + "1" * 32 + "-" + "0" * 16 + "-01",  # zero span id
        "00-" + "1" * 32 + "-" + "1" * 16 + "-00",  # not sampled: the sender should not have sent it
        "01-" + "1" * 32 + "-" + "1" * 16 + "-01",  # unknown version
        "00-" + "g" * 32 + "-" + "1" * 16 + "-01",  # not hex
        "00-" + "1" * 32 + "+" + "1" * 16 + "-01",
        "00-" + "1" * 32 + "-" + "1" * 16 + "-01" + "x" * 1000,
    ],
)
def test_anything_but_a_sampled_traceparent_is_ignored(tracer, tp: object) -> None:
    assert tracer.enter({"tp": tp}, "a", "m") == (None, None)


def test_spans_are_exported_from_the_buffer_with_their_ids_parents_times_and_status() -> None:
    """The call path records tuples; the export thread builds the SDK's spans from them, on its own."""
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from llmos_actors._rpc.tracing import CallTracer
    from llmos_actors.testing import wait_for

    tracer = CallTracer({**DEFAULTS, "enabled": True, "exporter": "memory", "sample_ratio": 1.0})
    roots: dict = {}
    tp = tracer.outgoing("m", None, 1, roots)["tp"]
    server, token = tracer.enter({"tp": tp}, "actor", "m")
    inner = tracer.outgoing("n", None, 2, roots)["tp"]  # a call made inside the server span
    tracer.leave(token)
    tracer.fail(server, "the method raised")
    server.end()
    tracer.end(roots.pop(1), ValueError("boom"))
    assert roots == {} and inner[3:35] == tp[3:35] and inner[36:52] == f"{server.span_id:016x}"
    # No flush asked for: the recorder's thread exports on its schedule.
    exported = InMemorySpanExporter.get_finished_spans
    wait_for(lambda: len(exported(tracer.memory)) == 2, timeout=10, what="the export thread's batch")
    server_span, root_span = sorted(exported(tracer.memory), key=lambda s: s.kind.name != "SERVER")
    assert server_span.name == "actor.m" and root_span.name == "call m"
    assert f"{root_span.context.trace_id:032x}" == tp[3:35] == f"{server_span.context.trace_id:032x}"
    assert f"{root_span.context.span_id:016x}" == tp[36:52] == f"{server_span.parent.span_id:016x}"
    assert server_span.parent.is_remote and root_span.parent is None
    assert root_span.start_time <= server_span.start_time < server_span.end_time <= root_span.end_time
    assert server_span.status.status_code.name == root_span.status.status_code.name == "ERROR"
    assert root_span.status.description == "ValueError: boom"
    assert root_span.instrumentation_scope.name == "llmos_actors"
    assert root_span.resource.attributes["service.name"] == DEFAULTS["service_name"]
    tracer.shutdown()


def test_a_full_buffer_drops_new_spans_and_counts_them(monkeypatch) -> None:
    from llmos_actors._rpc import spans
    from llmos_actors._rpc.tracing import CallTracer

    monkeypatch.setattr(spans, "MAX_PENDING", 10)
    tracer = CallTracer({**DEFAULTS, "enabled": True, "exporter": "memory", "sample_ratio": 1.0})
    recorder = tracer.recorder
    with recorder._export_lock:  # the exporter is stuck: nothing leaves the buffer
        recorder._pid = os.getpid()  # (and no thread is started to wait on the lock)
        for _ in range(25):
            tracer.outgoing("m", None)  # a tell's root: ended at once
        assert len(recorder.pending) == 10 and tracer.dropped == 15
    assert len(tracer.memory.get_finished_spans()) == 10  # the ones kept are exported
    tracer.shutdown()


def test_the_server_span_is_the_applications_current_span() -> None:
    """Code inside a traced method sees the span: its attributes are exported, its own spans are children."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    from llmos_actors._rpc.tracing import CallTracer

    tracer = CallTracer({**DEFAULTS, "enabled": True, "exporter": "memory", "sample_ratio": 1.0})
    server, token = tracer.enter({"tp": "00-" + "3" * 32 + "-" + "4" * 16 + "-01"}, "actor", "m")
    try:
        current = trace.get_current_span()
        assert current is server
        current.set_attribute("llm.tokens", 12)
        with TracerProvider().get_tracer("app").start_as_current_span("app work") as own:
            assert own.parent.span_id == server.span_id and own.get_span_context().trace_id == int("3" * 32, 16)
    finally:
        tracer.leave(token)
    server.end()
    (span,) = tracer.memory.get_finished_spans()
    assert dict(span.attributes) == {"llm.tokens": 12} and span.status.status_code.name == "UNSET"
    tracer.shutdown()
