"""Monitors and links (issue 5, part 3)."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

import llmos_actors as llmos
from llmos_actors.testing import wait_for

from supervision_actors import Trapper, Watcher, Worker


def _row(kernel, ref) -> dict:
    return next(r for r in kernel.ps() if r["id"] == ref.id)


def test_client_monitor_gets_exit_code_and_signal(kernel):
    w = kernel.spawn(Worker, name="monitored")
    seen = []
    with kernel.monitor(w, callback=seen.append) as mon:
        w.tell("crash", 7)
        notice = mon.wait(timeout=10)
    assert (notice.name, notice.exitcode, notice.signal, notice.restarting) == ("monitored", 7, None, False)
    assert notice.abnormal and "code 7" in notice.reason
    assert seen == [notice]
    w2 = kernel.spawn(Worker)
    mon = kernel.monitor(w2)
    os.kill(_row(kernel, w2)["pid"], signal.SIGKILL)
    assert mon.wait(timeout=10).signal == signal.SIGKILL
    assert list(mon) == []  # that was the final notice: iteration ends


def test_monitor_of_unknown_or_dead_actor_answers_at_once(kernel):
    notice = kernel.monitor("no-such-actor").wait(timeout=10)
    assert notice.reason.startswith("noproc") and not notice.restarting
    w = kernel.spawn(Worker)
    kernel.kill(w)
    assert kernel.monitor(w).wait(timeout=10).exitcode == 0


def test_monitor_follows_restarts(kernel):
    w = kernel.spawn(Worker, restart=llmos.RestartPolicy("permanent", intensity=1, backoff=0.0))
    mon = kernel.monitor(w)
    os.kill(_row(kernel, w)["pid"], signal.SIGKILL)
    first = mon.wait(timeout=10)
    assert first.restarting and first.incarnation == 1
    wait_for(lambda: _row(kernel, w)["state"] == "running" and _row(kernel, w)["incarnation"] == 2, 10)
    os.kill(_row(kernel, w)["pid"], signal.SIGKILL)  # intensity 1: no second restart
    last = mon.wait(timeout=10)
    assert not last.restarting and "gave up" in last.reason
    assert mon.finished


def test_cancelled_monitor_hears_nothing(kernel):
    w = kernel.spawn(Worker)
    mon = kernel.monitor(w)
    mon.cancel()
    kernel.kill(w)
    with pytest.raises(llmos.ClosedError):
        mon.wait(timeout=0.2)


def test_async_monitor(daemon):
    async def main():
        async with llmos.connect_async(config=daemon.config) as k:
            w = await k.spawn(Worker)
            async with k.monitor(w) as mon:
                await w.tell("crash", 4)
                notices = [n async for n in mon]
            assert [n.exitcode for n in notices] == [4]

    asyncio.run(main())


def test_actor_monitor_delivers_into_the_mailbox(kernel):
    watcher = kernel.spawn(Watcher)
    target = kernel.spawn(Worker, name="watched")
    watcher.call("watch", target)
    os.kill(_row(kernel, target)["pid"], signal.SIGKILL)
    downs = wait_for(lambda: watcher.call("seen"), 10, what="on_monitor_down")
    name, sig, restarting, thread = downs[0]
    assert (name, sig, restarting) == ("watched", signal.SIGKILL, False)
    assert thread == "MainThread"  # run by the mailbox like any call


def test_link_kills_the_partner_on_abnormal_exit(kernel):
    a, b = kernel.spawn(Worker, name="link-a"), kernel.spawn(Worker, name="link-b")
    kernel.link(a, b)
    a.tell("crash", 3)
    wait_for(lambda: _row(kernel, b)["state"] == "exited", 10)
    row = _row(kernel, b)
    assert row["exit"]["signal"] == signal.SIGKILL
    assert "linked actor 'link-a' exited" in row["exit"]["reason"]


def test_link_ignores_normal_exits_and_is_consumed_by_a_death(kernel):
    a, b = kernel.spawn(Worker), kernel.spawn(Worker)
    kernel.link(a, b)
    kernel.kill(a)  # SIGTERM, exit code 0: normal
    assert b.call("incr") == 1
    assert kernel.status()["monitors"]["links"] == 0
    with pytest.raises(llmos.ActorDiedError, match="cannot link"):
        kernel.link(a, b)
    with pytest.raises(llmos.ActorNotFound):
        kernel.link("no-such", b)
    with pytest.raises(llmos.ProtocolError, match="itself"):
        kernel.link(b, b)


def test_trapping_exits_delivers_on_exit_instead(kernel):
    trapper = kernel.spawn(Trapper)
    victim = kernel.spawn(Worker, name="trapped-victim")
    trapper.call("link_to", victim)
    os.kill(_row(kernel, victim)["pid"], signal.SIGKILL)
    seen = wait_for(lambda: trapper.call("seen"), 10, what="on_exit")
    assert seen[0][0] == victim.id and seen[0][2] == signal.SIGKILL
    assert _row(kernel, trapper)["state"] == "running"


def test_linked_permanent_pair_restarts_without_looping(kernel):
    policy = llmos.RestartPolicy("permanent", intensity=5, backoff=0.0)
    a, b = kernel.spawn(Worker, restart=policy), kernel.spawn(Worker, restart=policy)
    kernel.link(a, b)
    os.kill(_row(kernel, a)["pid"], signal.SIGKILL)
    wait_for(lambda: _row(kernel, a)["incarnation"] == 2 and _row(kernel, b)["incarnation"] == 2, 10)
    wait_for(lambda: _row(kernel, a)["state"] == _row(kernel, b)["state"] == "running", 10)
    # The link died with the first incarnation: no ping-pong of kills.
    assert kernel.status()["monitors"]["links"] == 0
    assert a.call("incr") == 1 and b.call("incr") == 1
    assert _row(kernel, a)["incarnation"] == 2 and _row(kernel, b)["incarnation"] == 2
