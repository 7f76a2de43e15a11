"""``[tracing] exporter = "otlp"`` end to end: actors and the client post OTLP/HTTP protobuf to a
real receiver on loopback, which decodes it with opentelemetry-proto."""

from __future__ import annotations

import asyncio
import gzip
import threading
from collections.abc import Iterator

import pytest

pytest.importorskip("opentelemetry.exporter.otlp.proto.http.trace_exporter")
pytest.importorskip("opentelemetry.proto.collector.trace.v1.trace_service_pb2")

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from llmos_actors.testing import start_daemon, wait_for
from tests.tracing_actors import Hop


class Receiver:
    """An OTLP/HTTP trace receiver (``POST /v1/traces``, protobuf) on its own thread and loop."""

    def __init__(self) -> None:
        self.spans: list[dict] = []
        self.posts = 0
        self.loop = asyncio.new_event_loop()
        self.runner: web.AppRunner | None = None
        self.port = 0
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self.thread.start()
        assert ready.wait(30), "the receiver did not start"

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        app = web.Application(client_max_size=16 << 20)
        app.router.add_post("/v1/traces", self._traces)
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False)
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        ready.set()
        self.loop.run_forever()

    async def _traces(self, request: web.Request) -> web.Response:
        assert request.content_type == "application/x-protobuf", request.content_type
        body = await request.read()
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        export = ExportTraceServiceRequest()
        export.ParseFromString(body)
        self.posts += 1
        for resource_spans in export.resource_spans:
            service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}.get("service.name")
            for scope_spans in resource_spans.scope_spans:
                for s in scope_spans.spans:
                    self.spans.append(
                        {
                            "name": s.name,
                            "trace_id": s.trace_id.hex(),
                            "span_id": s.span_id.hex(),
                            "parent_id": s.parent_span_id.hex() or None,
                            "kind": s.kind,
                            "duration": (s.end_time_unix_nano - s.start_time_unix_nano) / 1e9,
                            "service": service,
                            "scope": scope_spans.scope.name,
                        }
                    )
        reply = ExportTraceServiceResponse().SerializeToString()
        return web.Response(body=reply, content_type="application/x-protobuf")

    def close(self) -> None:
        async def stop() -> None:
            if self.runner is not None:
                await self.runner.cleanup()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
        self.loop.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    try:
        yield r
    finally:
        r.close()


def test_spans_reach_an_otlp_receiver_as_one_trace(receiver: Receiver) -> None:
    tracing = {
        "enabled": True,
        "sample_ratio": 1.0,
        "exporter": "otlp",
        "endpoint": f"http://127.0.0.1:{receiver.port}/v1/traces",
        "service_name": "llmos-otlp-test",
    }
    with start_daemon(tracing=tracing) as d, d.connect() as kernel:
        kernel.spawn(Hop, name="otlp_tool")
        kernel.spawn(Hop, "otlp_tool", name="otlp_front")
        assert kernel.lookup("otlp_front").call("run", 1) == 3
        tracer = kernel._core.tracer
        assert tracer is not None and tracer.memory is None  # the OTLP exporter, not the test one
        assert tracer.provider.force_flush(30_000)  # this client's root span
        # The actors' batch processors post on their schedule (5 s) or when the actors stop.
        for name in ("otlp_front", "otlp_tool"):
            kernel.kill(name)

        def chain_arrived() -> bool:
            names = {s["name"] for s in receiver.spans}
            return {"otlp_front.run", "otlp_tool.run"} <= names

        wait_for(chain_arrived, timeout=60, what="the actors' spans at the receiver")
    assert tracer.provider.force_flush(30_000)  # what the client traced since (kills): nothing left for exit
    front = next(s for s in receiver.spans if s["name"] == "otlp_front.run")
    tool = next(s for s in receiver.spans if s["name"] == "otlp_tool.run")
    roots = [s for s in receiver.spans if s["name"] == "call run" and s["trace_id"] == front["trace_id"]]
    assert len(roots) == 1 and roots[0]["parent_id"] is None, roots
    assert tool["trace_id"] == front["trace_id"] and tool["parent_id"] == front["span_id"]
    assert front["parent_id"] == roots[0]["span_id"]
    assert roots[0]["duration"] >= front["duration"] >= tool["duration"] > 0
    assert {s["service"] for s in receiver.spans} == {"llmos-otlp-test"}
    assert {s["scope"] for s in receiver.spans} == {"llmos_actors"}
    assert receiver.posts >= 2  # at least the client's and one actor's batch, each its own request
