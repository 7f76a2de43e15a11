"""Threads and coroutines inside actors, their counters in ps, and stopping with drain or cancel (part 5)."""

from __future__ import annotations

import time

import pytest

import llmos_actors as llmos
from llmos_actors.testing import wait_for

from supervision_actors import AsyncBusy, Pooled


def _stats(kernel, ref) -> dict:
    return next(r for r in kernel.ps() if r["id"] == ref.id)["stats"]


def test_max_concurrency_runs_sync_methods_on_a_pool(kernel):
    p = kernel.spawn(Pooled)
    started = time.monotonic()
    futures = [p.ask("work", 0.4) for _ in range(4)]
    names = [f.result(timeout=10) for f in futures]
    assert time.monotonic() - started < 1.2  # four at once, not one after the other
    assert len(set(names)) == 4 and all(n.startswith("llmos-actor") for n in names)


def test_ps_shows_active_and_queued_calls(kernel):
    p = kernel.spawn(Pooled)
    futures = [p.ask("work", 1.5) for _ in range(6)]  # 4 run, 2 wait
    stats = wait_for(
        lambda: (s := _stats(kernel, p)).get("active") == 4 and s.get("queued") == 2 and s, 10, what="heartbeat"
    )
    assert stats["calls"] == 6
    for f in futures:
        f.result(timeout=20)


def test_async_methods_interleave_up_to_max_async(kernel):
    a = kernel.spawn(AsyncBusy)
    started = time.monotonic()
    peaks = [f.result(timeout=10) for f in [a.ask("work", 0.3) for _ in range(6)]]
    assert max(peaks) == 2 and a.call("peak_seen") == 2
    assert time.monotonic() - started < 2.0  # three rounds of two, not six in a row


def test_kill_drains_calls_in_flight(kernel):
    p = kernel.spawn(Pooled)
    futures = [p.ask("work", 0.5) for _ in range(3)]
    wait_for(lambda: _stats(kernel, p).get("active") == 3, 10)
    record = kernel.kill(p, grace=5.0, drain=True)
    assert record["exitcode"] == 0
    assert all(f.result(timeout=5).startswith("llmos-actor") for f in futures)


def test_kill_without_drain_cancels_calls_in_flight(kernel):
    a = kernel.spawn(AsyncBusy)
    futures = [a.ask("work", 30) for _ in range(2)]
    wait_for(lambda: _stats(kernel, a).get("active") == 2, 10)
    started = time.monotonic()
    record = kernel.kill(a, grace=5.0, drain=False)
    assert time.monotonic() - started < 3.0 and record["exitcode"] == 0
    for f in futures:
        with pytest.raises(llmos.ActorDiedError, match="stopped while running 'work'"):
            f.result(timeout=5)
