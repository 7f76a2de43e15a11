"""The daemon's sync objects without processes: FIFO grants, release rules, deadlocks, timeouts, cleanup."""

from __future__ import annotations

import asyncio
import os

import pytest

from llmos_actors._kernel.syncobjects import SyncObjects
from llmos_actors.errors import CallTimeout, DeadlockError, LockError, ProtocolError

ME = os.getpid()  # a live pid that the service does not watch (its own)


class Req:
    def __init__(self, ident: bytes = b"client-1") -> None:
        self.ident = ident


R = Req()


def who(owner: str) -> dict:
    return {"pid": ME, "owner": owner}


def run(coro_fn):
    asyncio.run(coro_fn())


def test_mutex_fifo_release_rules_and_timeouts():
    async def main():
        s = SyncObjects(asyncio.get_running_loop())
        assert s.h_acquire(R, "mutex", "m", None, who("A"), None, 1) is True
        fb = s.h_acquire(R, "mutex", "m", None, who("B"), None, 2)
        fc = s.h_acquire(R, "mutex", "m", None, who("C"), None, 3)
        assert s.h_acquire(R, "mutex", "m", None, who("D"), 0, 4) is False  # non-blocking
        with pytest.raises(LockError, match="held by pid"):
            s.h_release(R, "mutex", "m", who("B"))
        with pytest.raises(DeadlockError, match="not reentrant"):
            s.h_acquire(R, "mutex", "m", None, who("A"), None, 5)
        s.h_release(R, "mutex", "m", who("A"))
        assert await fb is True and not fc.done()  # first come, first served
        s.h_release(R, "mutex", "m", who("B"))
        assert await fc is True
        late = s.h_acquire(R, "mutex", "m", None, who("E"), 0.01, 6)
        assert await late is False  # timed out in the daemon
        s.h_release(R, "mutex", "m", who("C"))
        with pytest.raises(LockError, match="not held"):
            s.h_release(R, "mutex", "m", who("C"))
        with pytest.raises(LockError, match="no mutex named"):
            s.h_release(R, "mutex", "never", who("C"))
        with pytest.raises(LockError, match="is a mutex, not a semaphore"):
            s.h_acquire(R, "semaphore", "m", {"n": 2}, who("A"), None, 7)
        assert s.objects["m"].granted == 3 and s.objects["m"].timeouts == 1

    run(main)


def test_deadlock_is_refused_and_reported():
    async def main():
        s = SyncObjects(asyncio.get_running_loop())
        assert s.h_acquire(R, "mutex", "m1", None, who("A"), None, 1)
        assert s.h_acquire(R, "mutex", "m2", None, who("B"), None, 2)
        a_waits = s.h_acquire(R, "mutex", "m2", None, who("A"), None, 3)
        with pytest.raises(DeadlockError, match="would deadlock"):
            s.h_acquire(R, "mutex", "m1", None, who("B"), None, 4)
        status = s.status()
        assert status["deadlocks_detected"] == 1 and status["deadlocks"][0]["cycle"]
        assert status["waits"][0]["on"] == "mutex m2"
        assert status["cycles_now"] == []
        s.h_release(R, "mutex", "m2", who("B"))  # B backs off: A proceeds
        assert await a_waits is True

    run(main)


def test_semaphore_units_per_holder():
    async def main():
        s = SyncObjects(asyncio.get_running_loop())
        for bad in (0, -1, "2", None):
            with pytest.raises(LockError):
                s.h_acquire(R, "semaphore", f"bad{bad}", {"n": bad}, who("A"), None, 1)
        assert s.h_acquire(R, "semaphore", "s", {"n": 2}, who("A"), None, 1)
        assert s.h_acquire(R, "semaphore", "s", {"n": 2}, who("A"), None, 2)  # a holder may take several
        fb = s.h_acquire(R, "semaphore", "s", {"n": 2}, who("B"), None, 3)
        with pytest.raises(LockError, match="n=2"):
            s.h_acquire(R, "semaphore", "s", {"n": 3}, who("B"), None, 4)
        with pytest.raises(LockError, match="hold none"):
            s.h_release(R, "semaphore", "s", who("C"))
        s.h_release(R, "semaphore", "s", who("A"))
        assert await fb is True
        assert s.objects["s"].free == 0

    run(main)


def test_condition_wait_notify():
    async def main():
        s = SyncObjects(asyncio.get_running_loop())
        assert s.h_acquire(R, "condition", "c", None, who("A"), None, 1)
        with pytest.raises(LockError, match="do not hold"):
            s.h_cond_wait(R, "c", who("B"), None, 2)
        a_wait = s.h_cond_wait(R, "c", who("A"), None, 3)  # releases the lock
        assert s.h_acquire(R, "condition", "c", None, who("B"), None, 4) is True
        assert s.h_cond_notify(R, "c", who("B"), 1) == 1
        assert not a_wait.done()  # notified, but re-acquires only when B lets go
        s.h_release(R, "condition", "c", who("B"))
        assert await a_wait is True
        timed = s.h_cond_wait(R, "c", who("A"), 0.01, 5)
        assert await timed is False  # timed out, and holds the lock again
        assert s.objects["c"].holder == (ME, "A")
        with pytest.raises(LockError):
            s.h_cond_notify(R, "c", who("B"), 1)

    run(main)


def test_barrier_and_event():
    async def main():
        s = SyncObjects(asyncio.get_running_loop())
        with pytest.raises(LockError, match="parties"):
            s.h_barrier_wait(R, "b0", 0, who("A"), None, 1)
        waits = [s.h_barrier_wait(R, "b", 3, who(o), None, i) for i, o in enumerate("ABC")]
        assert sorted(await asyncio.gather(*waits)) == [0, 1, 2]
        lone = s.h_barrier_wait(R, "b", 3, who("A"), 0.01, 9)
        with pytest.raises(CallTimeout):
            await lone
        assert s.objects["b"].arrived == []
        ev = s.h_event_wait(R, "e", who("A"), None, 1)
        assert s.h_event_is_set(R, "e") is False
        s.h_event_set(R, "e")
        assert await ev is True
        assert s.h_event_wait(R, "e", who("B"), 1.0, 2) is True
        s.h_event_clear(R, "e")
        assert await s.h_event_wait(R, "e", who("B"), 0.01, 3) is False

    run(main)


def test_holder_gone_releases_and_cancel_undoes_grants():
    async def main():
        s = SyncObjects(asyncio.get_running_loop())
        other = Req(b"client-2")
        assert s.h_acquire(R, "mutex", "m", None, who("A"), None, 1)
        waiting = s.h_acquire(other, "mutex", "m", None, {"pid": ME, "owner": "B"}, None, 2)
        s.client_gone(R.ident)  # client-1 said goodbye: its lock goes to client-2
        assert await waiting is True
        s.h_cancel(other, 2)  # a cancel that crossed its grant releases it
        assert s.objects["m"].holder is None
        assert s.h_acquire(R, "semaphore", "s", {"n": 1}, who("A"), None, 3)
        q = s.h_acquire(R, "semaphore", "s", {"n": 1}, who("B"), None, 4)
        s.h_cancel(R, 4)  # withdrawn while waiting
        with pytest.raises(LockError, match="cancelled"):
            await q
        s.release_where(lambda holder, ident: holder[1] == "A", "test")
        assert s.objects["s"].free == 1 and s.released_gone_holders == 2
        with pytest.raises(ProtocolError):
            s.h_acquire(R, "mutex", "m", None, {"pid": "x"}, None, 5)
        with pytest.raises(LockError, match="kind"):
            s.h_acquire(R, "gizmo", "m", None, who("A"), None, 6)
        with pytest.raises(LockError, match="name"):
            s.h_acquire(R, "mutex", "", None, who("A"), None, 7)
        assert s.h_delete(R, "m") is True and s.h_delete(R, "m") is False

    run(main)
