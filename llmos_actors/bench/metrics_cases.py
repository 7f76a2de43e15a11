"""What observability costs: the 1:1 call cases against daemons with metrics or tracing on.

Each contestant starts its own daemon (so the run's main daemon keeps its settings)
and runs the plain case's workload against it. The case
``1_1_actor_calls_{sync,async}_observed`` is ours with nothing on (``obs_off``); its
comparisons (with ``--peers``), measured in the same run, taking turns:

- ``llmos_metrics_on``: ``[metrics] listen`` (actors time every call) and ``/metrics``
  scraped once a second by a thread of the benchmark process;
- ``llmos_tracing_1pct``: ``[tracing]`` on at 1 % sampling, exporting as the docs recommend:
  OTLP/HTTP batches to a receiver on loopback (``otlp_sink``, a process of its own that
  keeps nothing).

The ratio column reads as the cost: 1.03 means on is 3 % slower than off. Targets:
metrics on within 5 % (ratio <= 1.05), tracing at 1 % within 10 % (<= 1.10).
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import urllib.request
from typing import Any

from .._rpc.tracing import tracer_for
from . import ours
from .context import BenchContext
from .otlp_sink import Sink
from .workload import Workload

#: Seconds between scrapes of /metrics while a ``metrics_on`` variant runs.
SCRAPE_EVERY = 1.0

SETTINGS: dict[str, dict[str, Any]] = {
    "obs_off": {},
    "metrics_on": {"metrics": {"listen": "127.0.0.1:0"}},
    "tracing_1pct": {"tracing": {"enabled": True, "sample_ratio": 0.01, "exporter": "otlp"}},
}
WORKLOADS = {"sync": ours.SyncCalls, "async": ours.AsyncCalls}


class Observed(Workload):
    """A plain call workload against its own daemon started with ``settings`` (and scraped if serving)."""

    def __init__(self, ctx: BenchContext, flavour: str, variant: str) -> None:
        from ..testing import start_daemon

        self.stack = contextlib.ExitStack()
        self.stop = threading.Event()
        self.scrapes = 0
        self.inner: Workload | None = None
        self.thread: threading.Thread | None = None
        try:
            settings = SETTINGS[variant]
            if "tracing" in settings:  # spans go to a receiver on loopback, out of the measured processes
                sink = Sink()
                self.stack.callback(sink.close)
                settings = {"tracing": {**settings["tracing"], "endpoint": sink.url}}
            handle = self.stack.enter_context(start_daemon(**settings))
            kernel = self.stack.enter_context(handle.connect())
            tracer = tracer_for(handle.config)
            if tracer is not None:  # this process's spans reach the sink before it closes (not at exit)
                self.stack.callback(tracer.shutdown)
            own = dataclasses.replace(ctx, kernel=kernel, config=handle.config, status=kernel.status())
            self.inner = WORKLOADS[flavour](own)
            self.ops = self.inner.ops
            self.note = f"{self.inner.note}; own daemon, {variant.replace('_', ' ')}"
            url = own.status.get("metrics", {}).get("url")
            if url:
                self.thread = threading.Thread(target=self._scrape, args=(url + "metrics",), daemon=True)
                self.thread.start()
        except BaseException:
            self.close()
            raise

    def _scrape(self, url: str) -> None:
        while not self.stop.wait(SCRAPE_EVERY):
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=5) as resp:
                resp.read()
                self.scrapes += 1

    def round(self) -> None:
        assert self.inner is not None
        self.inner.round()

    def close(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(10)
        try:
            if self.inner is not None:
                self.inner.close()
        finally:
            self.stack.close()


def cases() -> list[dict[str, Any]]:
    """The cases' fields (``Case(**fields)`` in the registry), left out of ``--quick`` unless named."""
    return [
        {
            "name": f"1_1_actor_calls_{flavour}_observed",
            "unit": "calls/s",
            "what": f"1_1_actor_calls_{flavour} against a fresh daemon with metrics and tracing off "
            "(peers: the same with them on)",
            "open": lambda ctx, flavour: Observed(ctx, flavour, "obs_off"),
            "params": {"flavour": flavour},
            "peers": ("llmos_metrics_on", "llmos_tracing_1pct"),
            "quick": False,
        }
        for flavour in WORKLOADS
    ]


def peers() -> list[tuple[str, str, Any]]:
    """``(id, label, open)`` of the comparisons (``Peer(*fields)`` in the peer registry)."""
    return [
        ("llmos_metrics_on", "llmos, metrics on", lambda ctx, flavour, **_: Observed(ctx, flavour, "metrics_on")),
        ("llmos_tracing_1pct", "llmos, tracing 1 %", lambda ctx, flavour, **_: Observed(ctx, flavour, "tracing_1pct")),
    ]
