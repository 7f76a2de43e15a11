"""Traces across actors: one call chain is one trace of parent/child spans (in-memory exporter)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

pytest.importorskip("opentelemetry.sdk")

import llmos_actors as llmos
from llmos_actors._rpc.tracing import HEADER, finished_spans, tracing_settings
from llmos_actors.testing import start_daemon, wait_for
from tests.tracing_actors import AsyncHop, FastHop, Hop

TRACING = {"enabled": True, "sample_ratio": 1.0, "exporter": "memory"}


def spans_of(
    kernel: llmos.Kernel, names: list[str], want: int, keep: Callable[[dict], bool] = lambda s: True
) -> list[dict]:
    """The spans the actors (and this client) recorded that ``keep`` accepts, once ``want`` are finished."""
    found: list[dict] = []

    def ready() -> bool:
        everything = finished_spans() + [
            s for n in names for s in kernel.lookup(n).call("spans") if not s["name"].endswith(".spans")
        ]
        found[:] = [s for s in everything if keep(s) and s["name"] not in ("call spans", "call lookup")]
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
        assert_encloses(roots[0], chain["front.run"])  # the root lasts from the send to the reply


def assert_encloses(outer: dict, inner: dict) -> None:
    """``outer`` began before ``inner`` and ended after it (span clocks: this machine's wall clock)."""
    assert outer["duration"] > 0
    assert outer["start"] <= inner["start"], (outer, inner)
    assert outer["start"] + outer["duration"] >= inner["start"] + inner["duration"], (outer, inner)


def test_the_sync_fast_paths_carry_the_trace() -> None:
    """Warm refs, no options: ``ask`` and ``tell`` skip the general encoder, and still continue the trace."""
    with start_daemon(tracing=TRACING) as d, d.connect() as kernel:
        kernel.spawn(FastHop, name="fast_sink")
        kernel.spawn(FastHop, name="fast_tool")
        kernel.spawn(FastHop, "fast_tool", "fast_sink", name="fast_agent")
        kernel.spawn(FastHop, "fast_agent", name="fast_front")
        for name in ("fast_front", "fast_agent"):
            kernel.lookup(name).call("warm")
        front = kernel.lookup("fast_front")
        front.call("warm")  # this ref's connection is open: its ask takes the fast path too
        assert front._conn is not None
        before = {s["span_id"] for s in finished_spans()}
        assert front.ask("run", 1).result(timeout=30) == 4
        names = ["fast_front", "fast_agent", "fast_tool", "fast_sink"]
        found = spans_of(kernel, names, 5, lambda s: s["span_id"] not in before and not s["name"].endswith("warm"))
        (root,) = [s for s in found if s["name"] == "call run" and s["parent_id"] is None]
        trace = [s for s in found if s["trace_id"] == root["trace_id"]]
        by_name = {s["name"]: s for s in trace}
        assert {"fast_front.run", "fast_agent.run", "fast_tool.run", "fast_sink.note"} <= set(by_name), sorted(by_name)
        assert by_name["fast_front.run"]["parent_id"] == root["span_id"]
        assert by_name["fast_agent.run"]["parent_id"] == by_name["fast_front.run"]["span_id"]
        assert by_name["fast_tool.run"]["parent_id"] == by_name["fast_agent.run"]["span_id"]
        assert by_name["fast_sink.note"]["parent_id"] == by_name["fast_agent.run"]["span_id"]  # the tell
        assert_encloses(root, by_name["fast_front.run"])


def test_the_asyncio_clients_root_span_lasts_until_the_reply() -> None:
    async def main(config: llmos.Config) -> None:
        async with llmos.connect_async(config=config) as kernel:
            ref = await kernel.lookup("async_front")
            assert await ref.call("run", 1) == 3
            with pytest.raises(llmos.RemoteError):
                await (await kernel.lookup("async_broken")).call("run", 1)

    with start_daemon(tracing=TRACING) as d, d.connect() as kernel:
        kernel.spawn(AsyncHop, name="async_tool")
        kernel.spawn(AsyncHop, "async_tool", name="async_front")
        kernel.spawn(Hop, "", True, name="async_broken")
        before = {s["span_id"] for s in finished_spans()}
        asyncio.run(main(d.config))
        found = spans_of(kernel, ["async_front", "async_tool", "async_broken"], 5, lambda s: s["span_id"] not in before)
        roots = {s["trace_id"]: s for s in found if s["name"] == "call run" and s["parent_id"] is None}
        servers = {s["name"]: s for s in found if s["kind"] == "SERVER"}
        good, bad = roots[servers["async_front.run"]["trace_id"]], roots[servers["async_broken.run"]["trace_id"]]
        assert_encloses(good, servers["async_front.run"])
        assert good["status"] != "ERROR" and bad["status"] == "ERROR"


def test_a_failing_call_marks_its_span_as_an_error() -> None:
    with start_daemon(tracing=TRACING) as d, d.connect() as kernel:
        kernel.spawn(Hop, "", True, name="broken")
        with pytest.raises(llmos.RemoteError):
            kernel.lookup("broken").call("run", 1)
        spans = spans_of(kernel, ["broken"], 2)
        (span,) = [s for s in spans if s["name"] == "broken.run"]
        assert span["status"] == "ERROR"
        (root,) = [s for s in spans if s["name"] == "call run" and s["trace_id"] == span["trace_id"]]
        assert root["status"] == "ERROR"  # the caller got the error too


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
