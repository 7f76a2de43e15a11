"""Kernel sync objects across real processes: clients and actors, holder death, deadlocks (issue 5, part 6)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading

import pytest

import llmos_actors as llmos
from llmos_actors.testing import wait_for

from supervision_actors import LockUser


def test_mutex_between_a_client_and_an_actor(kernel):
    m = kernel.mutex("shared")
    user = kernel.spawn(LockUser)
    with m:
        pending = user.ask("grab", "shared")  # waits in the daemon, FIFO
        assert not pending.done()
    assert pending.result(timeout=10) is True
    assert m.acquire(timeout=0.1) is False  # the actor holds it now
    with pytest.raises(llmos.LockError, match="held by pid"):
        m.release()
    waiting = kernel.mutex("shared")
    os.kill(user.call("pid"), signal.SIGKILL)  # the holder dies: the lock is released, the waiter woken
    assert waiting.acquire(timeout=10) is True
    waiting.release()
    objs = {o["name"]: o for o in kernel.sync_objects()}
    assert objs["shared"]["holder"] is None and objs["shared"]["granted"] >= 3


def test_client_process_killed_while_holding(kernel, daemon, tmp_path):
    ready = tmp_path / "ready"
    script = textwrap.dedent(
        f"""
        import signal, llmos_actors as llmos
        k = llmos.connect({str(daemon.runtime_dir)!r})
        k.mutex("client-held").acquire()
        k.semaphore("client-sem", 2).acquire()
        open({str(ready)!r}, "w").close()
        signal.pause()  # hold them until the test kills this process
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        wait_for(ready.exists, 30, what="the client to take its locks")
        assert kernel.mutex("client-held").acquire(timeout=0.1) is False
        proc.kill()  # kill -9
        proc.wait(10)
        assert kernel.mutex("client-held").acquire(timeout=10) is True
        sem = kernel.semaphore("client-sem", 2)
        assert sem.acquire(timeout=1) and sem.acquire(timeout=1)  # both units free again
        sem.release()
        sem.release()
        kernel.mutex("client-held").release()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert kernel.status()["sync"]["released_gone_holders"] >= 2


def test_closing_a_handle_releases_what_it_held(kernel, daemon):
    other = daemon.connect()
    taker = threading.Thread(target=other.mutex("handle-held").acquire)  # holders are (process, thread)
    taker.start()
    taker.join(10)
    waiter = kernel.mutex("handle-held")
    assert waiter.acquire(timeout=0.05) is False
    other.close()
    daemon.kernels.remove(other)
    assert waiter.acquire(timeout=10) is True
    waiter.release()


def test_deadlock_between_two_actors_is_detected(kernel):
    a, b = kernel.spawn(LockUser), kernel.spawn(LockUser)
    assert a.call("grab", "dl-1") and b.call("grab", "dl-2")
    a_wants = a.ask("want", "dl-2")  # a waits for b
    wait_for(lambda: kernel.status()["sync"]["waits"], 10, what="a to wait")
    # b asking for dl-1 (held by a, who waits for b) would close the cycle: refused.
    assert b.call("want", "dl-1").startswith("deadlock: acquiring mutex 'dl-1' would deadlock")
    sync = kernel.status()["sync"]
    assert sync["deadlocks_detected"] >= 1 and sync["deadlocks"][-1]["cycle"]
    b.call("release", "dl-2")  # b backs off: a goes on
    assert a_wants.result(timeout=10) == "got"


def test_semaphore_condition_barrier_event_across_processes(kernel):
    user = kernel.spawn(LockUser)
    ev = kernel.event("go")
    waiting = user.ask("wait_event", "go", 10)
    assert not ev.is_set()
    ev.set()
    assert waiting.result(timeout=10) is True and ev.wait(0) is True
    ev.clear()
    assert ev.wait(0.05) is False

    with pytest.raises(llmos.CallTimeout):
        kernel.barrier("meet", 2).wait(timeout=0.05)  # alone at the barrier

    sem = kernel.semaphore("slots", 2)
    assert sem.acquire() and sem.acquire() and not sem.acquire(timeout=0.05)
    sem.release()
    sem.release()
    with pytest.raises(llmos.LockError, match="hold none"):
        sem.release()

    cond = kernel.condition("cv")
    with cond:
        assert cond.wait(0.05) is False  # nobody notifies: times out, lock held again
        assert cond.notify() == 0
    with pytest.raises(llmos.LockError, match="do not hold"):
        cond.notify()


def test_barrier_between_a_client_and_an_actor(kernel, daemon):
    script_kernel = daemon.connect()
    try:
        b1, b2 = kernel.barrier("rendezvous", 2), script_kernel.barrier("rendezvous", 2)
        got: list = []
        t = threading.Thread(target=lambda: got.append(b2.wait(timeout=10)))
        t.start()
        got.append(b1.wait(timeout=10))
        t.join(10)
        assert sorted(got) == [0, 1]
    finally:
        script_kernel.close()
        daemon.kernels.remove(script_kernel)


def test_async_forms(daemon):
    async def main():
        async with llmos.connect_async(config=daemon.config) as k:
            async with k.mutex("async-m"):
                with pytest.raises(llmos.DeadlockError, match="not reentrant"):  # same task, same holder
                    await k.mutex("async-m").acquire(timeout=0.05)
                other = asyncio.ensure_future(k.mutex("async-m").acquire(timeout=0.05))
                assert await other is False  # another task is another holder: it waits
            order = []
            inside = []

            async def worker(i):
                async with k.mutex("async-fifo"):
                    inside.append(i)
                    order.append(i)
                    await k.status()  # a daemon round trip while holding it: the others really wait
                    assert inside == [i]
                    inside.remove(i)

            await asyncio.gather(*(worker(i) for i in range(5)))
            assert sorted(order) == list(range(5))
            ev = k.event("async-ev")
            waiter = asyncio.ensure_future(ev.wait(5))
            await ev.set()
            assert await waiter is True
            sem = k.semaphore("async-sem", 1)
            assert await sem.acquire() and not await sem.acquire(timeout=0.05)
            await sem.release()

    asyncio.run(main())


def test_bad_input_leaves_the_daemon_consistent(kernel):
    with pytest.raises(ValueError, match="n must be an int >= 1"):
        kernel.semaphore("neg", -1)
    with pytest.raises(ValueError, match="parties"):
        kernel.barrier("empty", 0)
    with pytest.raises(ValueError, match="name"):
        kernel.mutex("")
    with pytest.raises(llmos.LockError, match="no mutex named"):
        kernel.mutex("never-taken").release()
    m = kernel.mutex("taken-once")
    m.acquire()
    m.release()
    with pytest.raises(llmos.LockError, match="not held"):
        m.release()
    with pytest.raises(llmos.LockError, match="no condition named"):
        kernel.condition("ghost").notify()
    kernel.mutex("kind-clash").acquire()
    with pytest.raises(llmos.LockError, match="is a mutex, not a semaphore"):
        kernel.semaphore("kind-clash", 2).acquire()
    with pytest.raises(llmos.LockError, match="in use"):
        kernel.sync_delete("kind-clash")
    kernel.mutex("kind-clash").release()
    assert kernel.sync_delete("kind-clash") is True
    # Raw wire input the client would have refused:
    with pytest.raises(llmos.LockError, match="n must be an int >= 1"):
        kernel._control("sync_acquire", "semaphore", "raw-neg", {"n": -3}, {"pid": os.getpid(), "owner": "x"})
    with pytest.raises(llmos.ProtocolError):
        kernel._control("sync_acquire", "mutex", "raw", None, {"pid": -1, "owner": "x"})
    status = kernel.status()["sync"]
    assert status["cycles_now"] == [] and "raw-neg" not in {o["name"] for o in kernel.sync_objects()}
