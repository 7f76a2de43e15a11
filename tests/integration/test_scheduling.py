"""Scheduling: priority mailboxes, time slices, goals, pools, the adaptive loop, ``llmos top``."""

from __future__ import annotations

import asyncio
import json
import os

import psutil
import pytest

import llmos_actors as llmos
from llmos_actors.cli.__main__ import main
from llmos_actors.testing import start_daemon, wait_for

from actors import Burner, FifoRecorder, Recorder, SlowListener, Worker
from gates import Gate

CORES = sorted(os.sched_getaffinity(0))


def _blocked(kernel, tmp_path, n: int, cls=Recorder):
    """A recorder kept busy until the ``n`` calls the test sends next all wait in its mailbox."""
    r = kernel.spawn(cls)
    r.call("clear")
    gate = Gate(tmp_path)
    blocker = r.ask("hold_until_arrived", gate.path, n)
    gate.wait_held()
    return r, blocker


def test_higher_priority_runs_first(kernel, tmp_path):
    r, blocker = _blocked(kernel, tmp_path, 23)
    low = [r.options(priority=1).ask("record", f"low{i}") for i in range(20)]
    high = [r.options(priority=7).ask("record", f"high{i}") for i in range(3)]
    assert blocker.result(timeout=20) is True
    for f in [*low, *high]:
        f.result(timeout=20)
    order = r.call("order")
    assert order[:3] == ["high0", "high1", "high2"], order
    assert order[3:] == [f"low{i}" for i in range(20)]  # FIFO within a level


def test_an_urgent_call_overtakes_a_topic_batch(daemon):
    """A topic batch (up to 1,024 messages) is queued in pieces: urgent calls go between them."""

    async def main():
        async with llmos.connect_async(config=daemon.config) as kernel:
            listener = await kernel.spawn(SlowListener)
            urgent = listener.options(priority=7)
            for i in range(1024):  # one loop turn: exactly one batch of 1,024 leaves
                kernel.publish("slow.x", i)
            deadline = asyncio.get_running_loop().time() + 30
            seen = 0
            while seen == 0:  # until the batch is being worked on
                assert asyncio.get_running_loop().time() < deadline, "the batch never arrived"
                seen = await urgent.call("counted")
            assert seen < 1024  # it did not wait for the whole batch
            while await listener.call("counted") < 1024:
                assert asyncio.get_running_loop().time() < deadline, "the batch was not worked off"
            await kernel.kill(listener)

    asyncio.run(main())


def test_fifo_mailbox_ignores_priority(kernel, tmp_path):
    r, blocker = _blocked(kernel, tmp_path, 2, FifoRecorder)
    futures = [r.options(priority=1).ask("record", "low"), r.options(priority=7).ask("record", "high")]
    assert blocker.result(timeout=20) is True
    for f in futures:
        f.result(timeout=20)
    assert r.call("order") == ["low", "high"]


def test_objective_maps_to_priority(kernel, tmp_path):
    r, blocker = _blocked(kernel, tmp_path, 3)
    futures = [
        r.options(objective=1.0).ask("record", "minor"),
        r.options(objective=6.0).ask("record", "urgent goal"),
        r.ask("record", "default"),
    ]
    assert blocker.result(timeout=20) is True
    for f in futures:
        f.result(timeout=20)
    assert r.call("order") == ["urgent goal", "default", "minor"]


def test_long_generations_take_turns(kernel):
    r = kernel.spawn(Recorder)
    a = r.stream("generate", "a", 40, 0.002)
    b = r.stream("generate", "b", 40, 0.002)
    assert len(list(a)) == 40 and len(list(b)) == 40
    order = r.call("order")
    first_b = order.index("b0")
    assert first_b < order.index("a39")  # b started before a finished: round robin by quantum


def test_high_priority_call_preempts_a_long_generation_at_its_next_item(kernel):
    r = kernel.spawn(Recorder)
    stream = r.options(priority=2).stream("generate", "g", 500, 0.002)
    next(stream)
    assert r.options(priority=7).call("record", "urgent") > 0
    order = r.call("order")
    assert ("urgent" in order and order.index("urgent") < len(order) - 1) or "g499" not in order
    stream.close()


def test_pool_dispatch_tags_and_least_loaded(kernel, tmp_path):
    pool = kernel.pool(Worker, "w", size=2, tags=["cpu"], name="pool-a")
    names = {pool.call("work")["name"] for _ in range(10)}
    assert names <= {"pool-a.1", "pool-a.2"}
    gate = Gate(tmp_path)
    busy = [pool.ask("work", gate.path) for _ in range(4)]  # window 2 each
    gate.wait_held(2)  # both members busy at once
    gate.open()
    used = [f.result(timeout=30)["name"] for f in busy]
    assert set(used) == {"pool-a.1", "pool-a.2"}, (used, kernel.status()["scheduler"]["decisions"])
    with pytest.raises(llmos.LlmosError, match="no pool member has the tags"):
        pool.options(tags=["gpu"]).call("work")
    with pytest.raises(llmos.RemoteError, match="member failed"):
        pool.call("fail")
    rows = {r["name"]: r for r in kernel.ps(exited=False)}
    assert rows["pool-a.1"]["pool"] == "pool-a"
    assert pool.stop() == {"name": "pool-a", "stopped": True}
    wait_for(lambda: not any(r["name"].startswith("pool-a") for r in kernel.ps(exited=False)), 10)
    with pytest.raises(llmos.LlmosError, match="no pool named 'pool-a'"):
        pool.stop()
    with kernel.pool(Worker, "w", size=1, name="pool-b") as scoped:
        assert scoped.call("work")["name"] == "pool-b.1"
    assert not any(r["name"].startswith("pool-b") for r in kernel.ps(exited=False))


def test_pool_stop_without_drain_fails_the_backlog_at_once(kernel, tmp_path):
    pool = kernel.pool(Worker, size=1, window=4, name="pool-c")
    assert pool.call("work")["name"] == "pool-c.1"
    gate = Gate(tmp_path)
    backlog = [pool.ask("work", gate.path) for _ in range(10)]
    gate.wait_held()
    wait_for(lambda: pool.load()["queued"] > 0, 10, what="a backlog in the dispatcher")
    with pytest.raises(llmos.LlmosError, match="drain must be true or false"):
        pool.stop(drain="yes")
    assert pool.stop(drain=False) == {"name": "pool-c", "stopped": True}
    gate.open()  # the call already running may finish now
    outcomes = []
    for call in backlog:
        try:
            call.result(timeout=30)
            outcomes.append("done")
        except llmos.ActorDiedError:
            outcomes.append("died")
    assert outcomes.count("died") >= 9, outcomes  # at most the call already running may finish
    wait_for(lambda: not any(r["name"].startswith("pool-c") for r in kernel.ps(exited=False)), 10)


def test_pool_grows_under_backlog_and_shrinks_when_idle(tmp_path):
    with start_daemon(scheduler={"interval": 0.2, "grow_after": 0.2, "idle_after": 0.6}) as d:
        kernel = d.connect()
        pool = kernel.pool(Worker, size=1, max=3, window=1, name="elastic")
        gate = Gate(tmp_path)
        backlog = [pool.ask("work", gate.path) for _ in range(12)]
        wait_for(lambda: len(kernel.status()["scheduler"]["pools"][0]["members"]) == 3, 20, what="pool growth")
        gate.wait_held(3)  # each of the three members serves the backlog
        gate.open()
        for f in backlog:
            f.result(timeout=60)
        wait_for(lambda: len(kernel.status()["scheduler"]["pools"][0]["members"]) == 1, 30, what="pool shrink")
        actions = [x["action"] for x in kernel.status()["scheduler"]["decisions"]]
        assert "grow" in actions and "shrink" in actions
        reasons = " ".join(x["reason"] for x in kernel.status()["scheduler"]["decisions"])
        assert "waited" in reasons and "idle" in reasons


def test_pool_replaces_dead_member():
    with start_daemon(scheduler={"interval": 0.2}) as d:
        kernel = d.connect()
        pool = kernel.pool(Worker, size=2, name="resilient")
        victim = next(r for r in kernel.ps(exited=False) if r["name"] == "resilient.1")
        os.kill(victim["pid"], 9)
        wait_for(lambda: "resilient.3" in kernel.status()["scheduler"]["pools"][0]["members"], 20)
        assert pool.call("work")["name"] in {"resilient.2", "resilient.3"}


@pytest.mark.skipif(len(CORES) < 2, reason="needs two cores")
def test_adaptive_loop_moves_placed_actors_never_pinned_ones():
    with start_daemon(scheduler={"interval": 0.3, "renice": False}) as d:
        kernel = d.connect()
        placed = kernel.spawn(Burner, cpus="auto", name="placed")  # both idle: lands on core 0
        pinned = kernel.spawn(Burner, cpus=[placed.call("where")["cpus"][0]], name="pinned")
        core = pinned.call("where")["cpus"]
        jobs = [placed.ask("burn", 8.0), pinned.ask("burn", 8.0)]
        wait_for(lambda: any(x["action"] == "move" for x in kernel.status()["scheduler"]["decisions"]), 20)
        decision = next(x for x in kernel.status()["scheduler"]["decisions"] if x["action"] == "move")
        assert decision["target"] == "placed" and "busy" in decision["reason"]
        assert psutil.Process(placed.call("where")["pid"]).cpu_affinity() != core
        assert pinned.call("where")["cpus"] == core  # an explicit pin is never overridden
        rows = {r["name"]: r for r in kernel.ps(exited=False)}
        assert rows["placed"]["sched"].startswith("move")
        for job in jobs:
            job.result(timeout=30)


def test_renice_under_load():
    with start_daemon(scheduler={"interval": 0.3, "rebalance": False, "load_threshold": 0.1}) as d:
        kernel = d.connect()
        low = kernel.spawn(Burner, priority=1, name="low")
        high = kernel.spawn(Burner, priority=6, name="high")
        jobs = [low.ask("burn", 4.0), high.ask("burn", 4.0)]
        wait_for(lambda: low.call("where")["nice"] == 9 + 5, 20, what="low-priority actor reniced")
        decision = next(x for x in kernel.status()["scheduler"]["decisions"] if x["action"] == "renice")
        assert decision["target"] == "low" and "busy" in decision["reason"]
        assert high.call("where")["nice"] in (-6, 0)  # untouched (-6 only when permitted)
        for job in jobs:
            job.result(timeout=30)
        if os.geteuid() == 0:
            wait_for(lambda: low.call("where")["nice"] == 9, 20, what="nice restored after the load")


def test_top_once_and_json(kernel, daemon, capsys):
    r = kernel.spawn(Recorder, name="topped")
    r.call("record", 1)
    assert main(["--runtime-dir", str(daemon.runtime_dir), "top", "--once", "-n", "0.2"]) == 0
    out = capsys.readouterr().out
    assert "topped" in out and "QUEUE" in out and "CALLS/S" in out
    assert main(["--runtime-dir", str(daemon.runtime_dir), "top", "--json"]) == 0
    snapshot = json.loads(capsys.readouterr().out)
    assert any(a["name"] == "topped" for a in snapshot["actors"])
    assert "levels" in next(a for a in snapshot["actors"] if a["name"] == "topped")["stats"] or True
