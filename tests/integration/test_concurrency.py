"""Threads and coroutines inside actors, their counters in ps, and stopping with drain or cancel (part 5)."""

from __future__ import annotations

import concurrent.futures
import time

import pytest

import llmos_actors as llmos
from llmos_actors.testing import wait_for

from gates import Gate
from supervision_actors import AsyncBusy, Pooled


def _stats(kernel, ref) -> dict:
    return next(r for r in kernel.ps() if r["id"] == ref.id)["stats"]


def _draining(ref) -> bool:
    """True once the actor has begun its drain: it reads no new calls, so a ping goes unanswered."""
    try:
        ref.options(timeout=1.0).call("ping")
    except llmos.CallTimeout:
        return True
    return False


def test_max_concurrency_runs_sync_methods_on_a_pool(kernel, tmp_path):
    p = kernel.spawn(Pooled)
    gate = Gate(tmp_path)
    futures = [p.ask("work", gate.path) for _ in range(4)]
    gate.wait_held(4)  # four at once, not one after the other
    gate.open()
    names = [f.result(timeout=10) for f in futures]
    assert len(set(names)) == 4 and all(n.startswith("llmos-actor") for n in names)


def test_ps_shows_active_and_queued_calls(kernel, tmp_path):
    p = kernel.spawn(Pooled)
    gate = Gate(tmp_path)
    futures = [p.ask("work", gate.path) for _ in range(6)]  # 4 run, 2 wait
    stats = wait_for(
        lambda: (s := _stats(kernel, p)).get("active") == 4 and s.get("queued") == 2 and s, 10, what="heartbeat"
    )
    assert stats["calls"] == 6 and gate.held() == 4
    gate.open()
    for f in futures:
        f.result(timeout=20)


def test_async_methods_interleave_up_to_max_async(kernel, tmp_path):
    a = kernel.spawn(AsyncBusy)
    gate = Gate(tmp_path)
    futures = [a.ask("work", gate.path) for _ in range(6)]
    gate.wait_held(2)  # two interleave at once, not one after the other
    gate.open()
    peaks = [f.result(timeout=10) for f in futures]
    assert max(peaks) == 2 and a.call("peak_seen") == 2  # and never more than two


def test_kill_drains_calls_in_flight(kernel, tmp_path):
    p = kernel.spawn(Pooled)
    gate = Gate(tmp_path)
    futures = [p.ask("work", gate.path) for _ in range(3)]
    wait_for(lambda: _stats(kernel, p).get("active") == 3, 10)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        killing = pool.submit(kernel.kill, p, grace=5.0, drain=True)
        wait_for(lambda: _draining(p), 10, what="the actor to start its drain")
        assert not killing.done() and not any(f.done() for f in futures)  # the stop waits for them
        gate.open()
        record = killing.result(timeout=10)
    assert record["exitcode"] == 0
    assert all(f.result(timeout=5).startswith("llmos-actor") for f in futures)


def test_kill_without_drain_cancels_calls_in_flight(kernel, tmp_path):
    a = kernel.spawn(AsyncBusy)
    futures = [a.ask("work", Gate(tmp_path).path) for _ in range(2)]  # never opened
    wait_for(lambda: _stats(kernel, a).get("active") == 2, 10)
    started = time.monotonic()
    record = kernel.kill(a, grace=5.0, drain=False)
    assert time.monotonic() - started < 3.0 and record["exitcode"] == 0
    for f in futures:
        with pytest.raises(llmos.ActorDiedError, match="stopped while running 'work'"):
            f.result(timeout=5)
