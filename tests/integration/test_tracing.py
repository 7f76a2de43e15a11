"""Traces across actors: one call chain is one trace of parent/child spans (in-memory exporter)."""

from __future__ import annotations

import pytest

pytest.importorskip("opentelemetry.sdk")

import llmos_actors as llmos
from llmos_actors._rpc.tracing import HEADER, finished_spans, tracing_settings
from llmos_actors.testing import start_daemon, wait_for
from tests.tracing_actors import AsyncHop, Hop

TRACING = {"enabled": True, "sample_ratio": 1.0, "exporter": "memory"}


def spans_of(kernel: llmos.Kernel, names: list[str], want: int) -> list[dict]:
    """The spans the actors (and this client) recorded, once ``want`` of them are finished."""
    found: list[dict] = []

    def ready() -> bool:
        found[:] = finished_spans() + [
            s for n in names for s in kernel.lookup(n).call("spans") if s["name"] != f"{n}.spans"
        ]
        return len(found) >= want

    wait_for(ready, timeout=10, what=f"{want} spans")
    return found


@pytest.mark.parametrize("hop", [Hop, AsyncHop], ids=["sync", "async"])
def test_a_call_chain_across_three_actors_is_one_trace(hop: type) -> None:
    with start_daemon(tracing=TRACING) as d, d.connect() as kernel:
        kernel.spawn(hop, name="tool")
        kernel.spawn(hop, "tool", name="agent")
        kernel.spawn(hop, "agent", name="front")
        before = {s["span_id"] for s in finished_spans()}
        assert kernel.lookup("front").call("run", 1) == 4
        spans = [s for s in spans_of(kernel, ["front", "agent", "tool"], 4) if s["span_id"] not in before]
        roots = [s for s in spans if s["name"] == "call run"]
        assert len(roots) == 1 and roots[0]["parent_id"] is None and roots[0]["kind"] == "CLIENT"
        chain = {s["name"]: s for s in spans if s["kind"] == "SERVER" and s["name"].endswith(".run")}
        assert set(chain) == {"front.run", "agent.run", "tool.run"}
        assert {s["trace_id"] for s in [*roots, *chain.values()]} == {roots[0]["trace_id"]}, "one trace"
        assert chain["front.run"]["parent_id"] == roots[0]["span_id"]
        assert chain["agent.run"]["parent_id"] == chain["front.run"]["span_id"]
        assert chain["tool.run"]["parent_id"] == chain["agent.run"]["span_id"]
        # Each span encloses its child's work: the outer one lasts at least as long.
        assert chain["front.run"]["duration"] >= chain["agent.run"]["duration"] >= chain["tool.run"]["duration"]
        assert all(s["status"] != "ERROR" for s in chain.values())


def test_a_failing_call_marks_its_span_as_an_error() -> None:
    with start_daemon(tracing=TRACING) as d, d.connect() as kernel:
        kernel.spawn(Hop, "", True, name="broken")
        with pytest.raises(llmos.RemoteError):
            kernel.lookup("broken").call("run", 1)
        spans = spans_of(kernel, ["broken"], 2)
        (span,) = [s for s in spans if s["name"] == "broken.run"]
        assert span["status"] == "ERROR"


def test_sample_ratio_zero_records_nothing() -> None:
    with start_daemon(tracing={**TRACING, "sample_ratio": 0.0}) as d, d.connect() as kernel:
        kernel.spawn(Hop, name="quiet_tool")
        kernel.spawn(Hop, "quiet_tool", name="quiet")
        before = len(finished_spans())
        for _ in range(20):
            assert kernel.lookup("quiet").call("run", 1) == 3
        assert len(finished_spans()) == before
        assert kernel.lookup("quiet").call("spans") == []
        assert kernel.lookup("quiet_tool").call("spans") == []


def test_tracing_is_off_by_default() -> None:
    with start_daemon() as d, d.connect() as kernel:
        assert kernel._core.tracer is None
        kernel.spawn(Hop, name="plain")
        assert kernel.lookup("plain").call("run", 1) == 2


def test_tracing_settings_are_checked() -> None:
    assert tracing_settings({})["enabled"] is False
    assert tracing_settings({"tracing": {"enabled": True, "sample_ratio": 0.5}})["sample_ratio"] == 0.5
    for bad in ({"sample_ratio": 2}, {"exporter": "carrier-pigeon"}, {"enabled": "yes"}, {"colour": 1}):
        with pytest.raises(ValueError):
            tracing_settings({"tracing": bad})
    assert HEADER == "tp"
