"""Restart policies, intensity, supervisor trees, and calls during restarts (issue 5, parts 1, 2, 4)."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

import llmos_actors as llmos
from llmos_actors.testing import wait_for

from gates import Gate
from supervision_actors import FailsAfterFirst, Worker


def _row(kernel, ref) -> dict:
    return next(r for r in kernel.ps() if r["id"] == ref.id)


def _kill9(kernel, ref) -> int:
    pid = _row(kernel, ref)["pid"]
    os.kill(pid, signal.SIGKILL)
    return pid


def _restarted(kernel, ref, old_pid: int) -> dict:
    """Wait until ``ref`` runs again in a process other than ``old_pid``."""

    def check():
        row = _row(kernel, ref)
        return row if row["state"] == "running" and row["pid"] != old_pid else None

    return wait_for(check, 15, what=f"{ref.name or ref.id} to restart")


def _lines(path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_permanent_actor_restarts_with_same_name_pinning_priority_and_arguments(kernel):
    w = kernel.spawn(Worker, "w", start=5, name="perm", cpus=[0], priority=3, restart="permanent")
    before = w.call("info")
    assert w.call("incr") == 6
    os.kill(before["pid"], signal.SIGKILL)
    # A call sent before the daemon noticed the death is a call in flight (it fails): wait for that first.
    wait_for(lambda: _row(kernel, w)["pid"] != before["pid"] or _row(kernel, w)["state"] != "running", 10)
    after = w.options(wait_restart=True, timeout=15).call("info")
    assert after["pid"] != before["pid"]
    assert (after["name"], after["id"], after["cpus"], after["nice"]) == ("perm", w.id, [0], before["nice"])
    assert after["n"] == 5  # constructor arguments re-applied: a fresh incarnation
    row = _row(kernel, w)
    assert row["state"] == "running" and row["restarts"] == 1 and row["incarnation"] == 2
    assert row["last_exit"]["signal"] == signal.SIGKILL
    assert kernel.lookup("perm").id == w.id


def test_kill_by_request_never_restarts(kernel):
    w = kernel.spawn(Worker, restart="permanent")
    kernel.kill(w)
    assert _row(kernel, w)["state"] == "exited"  # decided before kill returns
    w2 = kernel.spawn(Worker, restart="permanent")
    kernel.kill(w2, force=True)
    row = _row(kernel, w2)
    assert row["state"] == "exited" and row["exit"]["signal"] == signal.SIGKILL


def test_transient_restarts_only_on_abnormal_exit(kernel):
    t = kernel.spawn(Worker, restart="transient")
    pid = _row(kernel, t)["pid"]
    t.tell("crash", 3)
    _restarted(kernel, t, pid)
    t.tell("crash", 0)  # a normal exit: done
    wait_for(lambda: _row(kernel, t)["state"] == "exited", 10)
    assert _row(kernel, t)["exit"]["exitcode"] == 0

    temp = kernel.spawn(Worker)  # temporary is the default for standalone actors
    _kill9(kernel, temp)
    wait_for(lambda: _row(kernel, temp)["state"] == "exited", 10)
    assert _row(kernel, temp)["restarts"] == 0


def test_intensity_exceeded_gives_up(kernel):
    policy = llmos.RestartPolicy("permanent", intensity=2, period=60, backoff=0.0)
    w = kernel.spawn(Worker, restart=policy)
    with kernel.subscribe("sys.supervisor.") as events:
        for _ in range(2):
            _restarted(kernel, w, _kill9(kernel, w))
        _kill9(kernel, w)
        wait_for(lambda: _row(kernel, w)["state"] == "exited", 10)
        topic, msg = events.get(timeout=10)
    assert topic == "sys.supervisor.gave_up" and msg["actor"] == w.id
    row = _row(kernel, w)
    assert "gave up: more than 2 restarts in 60 s" in row["exit"]["reason"]
    with pytest.raises(llmos.ActorDiedError) as info:
        w.options(wait_restart=True, timeout=5).call("info")
    assert not info.value.restarting


def test_failing_restarts_count_against_intensity(kernel, tmp_path):
    marker = tmp_path / "started"
    a = kernel.spawn(FailsAfterFirst, str(marker), restart=llmos.RestartPolicy(intensity=3, backoff=0.01))
    _kill9(kernel, a)  # every later incarnation raises in __init__
    wait_for(lambda: _row(kernel, a)["state"] == "exited", 15)
    row = _row(kernel, a)
    assert row["restarts"] == 3 and "gave up" in row["exit"]["reason"]
    assert "marker present" in row["exit"]["reason"]


def test_calls_during_a_restart_fail_fast_or_wait(kernel, tmp_path):
    # The 2nd restart within the window waits `backoff` seconds: time to look at a restarting actor.
    w = kernel.spawn(Worker, restart=llmos.RestartPolicy(backoff=1.5, intensity=10))
    first = w.call("info")["pid"]
    gate = Gate(tmp_path)
    in_flight = w.ask("hold", gate.path)
    gate.wait_held()
    os.kill(first, signal.SIGKILL)
    with pytest.raises(llmos.ActorDiedError) as info:
        in_flight.result(timeout=10)  # in flight when it died: fails, whatever the options
    assert info.value.restarting and info.value.signal == signal.SIGKILL
    second = _restarted(kernel, w, first)["pid"]
    os.kill(second, signal.SIGKILL)
    wait_for(lambda: _row(kernel, w)["state"] == "restarting", 10)
    started = time.monotonic()
    with pytest.raises(llmos.ActorDiedError) as info:
        w.call("info")  # default: fail fast
    assert info.value.restarting and time.monotonic() - started < 0.5
    with pytest.raises(llmos.CallTimeout):
        w.options(wait_restart=True, timeout=0.2).call("info")
    waiting = w.options(wait_restart=True, timeout=15).ask("info")  # never blocks the caller
    assert w.options(wait_restart=True, timeout=15).call("info")["pid"] not in (first, second)
    assert waiting.result(timeout=15)["pid"] not in (first, second)


def test_async_call_waits_for_restart(daemon):
    async def main():
        async with llmos.connect_async(config=daemon.config) as k:
            w = await k.spawn(Worker, restart=llmos.RestartPolicy(backoff=1.0, intensity=10))
            try:
                pid = (await w.call("info"))["pid"]
                os.kill(pid, signal.SIGKILL)
                for _ in range(3):  # the first call may race the death notice
                    try:
                        info = await w.options(wait_restart=True, timeout=15).call("info")
                        break
                    except llmos.ActorDiedError as exc:
                        assert exc.restarting
                assert info["pid"] != pid
            finally:
                await k.kill(w, force=True)

    asyncio.run(main())


def test_restart_events_on_system_topics(kernel):
    w = kernel.spawn(Worker, name="evented-restart", restart="permanent")
    with kernel.subscribe("sys.actor.") as sub:
        pid = _kill9(kernel, w)
        seen = {}
        while "sys.actor.restarted" not in seen:
            topic, msg = sub.get(timeout=10)
            seen[topic] = msg
    assert seen["sys.actor.exited"]["restarting"] is True and seen["sys.actor.exited"]["pid"] == pid
    assert seen["sys.actor.restarted"]["name"] == "evented-restart"
    assert seen["sys.actor.restarted"]["incarnation"] == 2


def _tree(kernel, strategy, journal):
    sup = kernel.supervisor(strategy=strategy, intensity=10, period=60, backoff=0.0)
    refs = [sup.spawn(Worker, tag, str(journal), name=None) for tag in "abc"]
    return sup, refs


@pytest.mark.parametrize(
    "strategy, restarted, log",
    [
        ("one_for_one", "b", ["start b"]),
        ("one_for_all", "abc", ["stop c", "stop a", "start a", "start b", "start c"]),
        ("rest_for_one", "bc", ["stop c", "start b", "start c"]),
    ],
)
def test_strategies(kernel, tmp_path, strategy, restarted, log):
    journal = tmp_path / "journal"
    sup, refs = _tree(kernel, strategy, journal)
    assert _lines(journal) == ["start a", "start b", "start c"]  # children start in order
    pids = {tag: _row(kernel, r)["pid"] for tag, r in zip("abc", refs, strict=True)}
    journal.write_text("")
    os.kill(pids["b"], signal.SIGKILL)
    for tag, ref in zip("abc", refs, strict=True):
        if tag in restarted:
            _restarted(kernel, ref, pids[tag])
    wait_for(lambda: _lines(journal)[-1:] == log[-1:], 15, what="the restarts to finish")
    assert _lines(journal) == log
    for tag, ref in zip("abc", refs, strict=True):
        if tag not in restarted:
            assert _row(kernel, ref)["pid"] == pids[tag]
    assert sup.describe()["restarts"] == 1
    journal.write_text("")
    result = sup.stop()
    assert _lines(journal) == ["stop c", "stop b", "stop a"]  # reverse order
    assert len(result["stopped"]) == 3
    assert all(_row(kernel, r)["state"] == "exited" for r in refs)
    assert sup.id not in {s["id"] for s in kernel.supervisors()}


def test_escalation_restarts_the_subtree(kernel):
    top = kernel.supervisor(name="top-ok", intensity=5, period=60, backoff=0.0)
    child = top.supervisor(name="child-ok", intensity=1, period=60, backoff=0.0)
    w1, w2 = child.spawn(Worker, "1"), child.spawn(Worker, "2")
    _restarted(kernel, w1, _kill9(kernel, w1))  # child's one allowed restart
    p2 = _row(kernel, w2)["pid"]
    old = _kill9(kernel, w1)  # one too many: child gives up, top restarts it (both workers)
    _restarted(kernel, w1, old)
    _restarted(kernel, w2, p2)
    wait_for(lambda: next(s for s in kernel.supervisors() if s["id"] == child.id)["state"] == "running", 10)
    assert top.describe()["restarts"] == 1
    top.stop()


def test_escalation_to_the_top_gives_up(kernel):
    top = kernel.supervisor(name="top-strict", intensity=0)
    child = top.supervisor(name="child-strict", intensity=0)
    w1, w2 = child.spawn(Worker, "1"), child.spawn(Worker, "2")
    with kernel.subscribe("sys.supervisor.") as events:
        _kill9(kernel, w1)
        topic, msg = events.get(timeout=10)
    assert topic == "sys.supervisor.gave_up" and msg["supervisor"] == top.id
    wait_for(lambda: _row(kernel, w2)["state"] == "exited", 10)
    assert "gave up" in _row(kernel, w2)["exit"]["reason"]
    states = {s["id"]: s["state"] for s in kernel.supervisors()}
    assert states[top.id] == states[child.id] == "failed"
    with pytest.raises(llmos.SupervisorError, match="failed"):
        child.spawn(Worker)
    top.stop()


def test_supervisor_bad_input(kernel):
    with pytest.raises(ValueError, match="strategy"):
        kernel.supervisor(strategy="all_for_none")
    with pytest.raises(ValueError, match="intensity"):
        kernel.supervisor(intensity=-1)
    with pytest.raises(llmos.SupervisorError, match="no supervisor"):
        kernel.spawn(Worker, supervisor="s-nope")
    with kernel.supervisor(name="dup") as sup:
        with pytest.raises(llmos.SupervisorError, match="already exists"):
            kernel.supervisor(name="dup")
        with pytest.raises(llmos.SupervisorError, match="supervisor's"):
            sup.spawn(Worker, restart=llmos.RestartPolicy(intensity=3))
        child = sup.spawn(Worker)
        assert _row(kernel, child)["restart"] == "permanent"  # OTP's default under a supervisor
    with pytest.raises(ValueError, match="intensity"):
        kernel.spawn(Worker, restart=llmos.RestartPolicy(intensity="many"))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        kernel.spawn(Worker, restart={"policy": "sometimes"})
