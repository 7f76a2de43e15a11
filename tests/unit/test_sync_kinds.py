"""Each sync-object kind's rules on a manual clock: timeouts fire when time is moved, not after a wait."""

from __future__ import annotations

from concurrent.futures import Future

import pytest

from llmos_actors._clock import ManualClock
from llmos_actors._kernel.sync_kinds import BarrierState, ConditionState, EventState, MutexState, SemaphoreState
from llmos_actors._kernel.sync_waits import SyncLedger, Waiter
from llmos_actors.errors import CallTimeout, DeadlockError, LockError

A, B, C = (1, "a"), (2, "b"), (3, "c")


def _waiter(holder, obj, op="acquire", ticket=0) -> Waiter:
    return Waiter(holder, b"client", ticket, Future(), obj, op)


def _setup():
    clock = ManualClock()
    return clock, SyncLedger(clock)


def test_manual_clock_runs_due_timers_in_deadline_order():
    clock = ManualClock(start=0.0)
    fired = []
    clock.call_later(2.0, lambda: fired.append(("b", clock.time())))
    clock.call_later(1.0, lambda: fired.append(("a", clock.time())))
    clock.call_later(9.0, lambda: fired.append(("late", clock.time()))).cancel()
    clock.advance(1.5)
    assert fired == [("a", 1.0)] and clock.time() == 1.5
    clock.advance(10.0)
    assert fired == [("a", 1.0), ("b", 2.0)] and clock.pending() == 0


def test_mutex_fifo_timeout_and_removal_from_the_middle():
    clock, ledger = _setup()
    m = MutexState("m", ledger)
    assert m.try_acquire(A, b"client", 1, None) is True
    assert m.try_acquire(B, b"client", 2, 0) is False  # would wait, and may not
    waiters = []
    for holder, timeout in ((B, 30.0), (C, None), ((4, "d"), None)):
        assert m.try_acquire(holder, b"client", 3, timeout) is None
        w = _waiter(holder, m)
        m.enqueue(w, timeout)
        waiters.append(w)
    b, c, d = waiters
    clock.advance(29.9)
    assert not b.fut.done()
    clock.advance(0.2)
    assert b.fut.result() is False and m.timeouts == 1
    m.remove(c)  # cancelled from the middle of the queue
    assert list(m.queue) == [d] and C not in ledger.waiting_on
    m.release(A)
    assert d.fut.result() is True and m.holder == (4, "d")
    with pytest.raises(LockError, match="held by pid 4"):
        m.release(A)
    assert m.describe()["held_for"] == 0.0
    clock.advance(2.5)
    assert m.describe()["held_for"] == 2.5  # read from the injected clock


def test_mutex_refuses_a_deadlock_and_reentry():
    _, ledger = _setup()
    m1, m2 = MutexState("m1", ledger), MutexState("m2", ledger)
    assert m1.try_acquire(A, b"x", 1, None) and m2.try_acquire(B, b"x", 2, None)
    assert m2.try_acquire(A, b"x", 3, None) is None
    m2.enqueue(_waiter(A, m2), None)
    with pytest.raises(DeadlockError, match="would deadlock"):
        m1.try_acquire(B, b"x", 4, None)
    with pytest.raises(DeadlockError, match="not reentrant"):
        m1.try_acquire(A, b"x", 5, None)
    assert ledger.deadlocks_detected == 1 and ledger.cycles() == []


def test_condition_wait_times_out_into_a_reacquire():
    clock, ledger = _setup()
    c = ConditionState("c", ledger)
    assert c.try_acquire(A, b"x", 1, None)
    sleeper = _waiter(A, c, "wait")
    c.sleep(sleeper, 5.0)  # releases the lock
    assert c.try_acquire(B, b"x", 2, None) is True
    clock.advance(5.0)
    assert not sleeper.fut.done() and list(c.queue) == [sleeper]  # woke, waits for the lock
    c.release(B)
    assert sleeper.fut.result() is False and c.holder == A  # timed out, holds the lock again
    second = _waiter(A, c, "wait")
    c.sleep(second, None)
    assert c.try_acquire(B, b"x", 3, None)
    assert c.notify(B, -1) == 1
    c.release(B)
    assert second.fut.result() is True


def test_semaphore_units_and_timeouts():
    clock, ledger = _setup()
    s = SemaphoreState("s", ledger, 2)
    assert s.try_acquire(A, b"x", 1, None) and s.try_acquire(A, b"x", 2, None)
    assert s.free == 0 and s.try_acquire(B, b"x", 3, None) is None
    w = _waiter(B, s)
    s.enqueue(w, 1.0)
    late = _waiter(C, s)
    s.enqueue(late, None)
    clock.advance(1.0)
    assert w.fut.result() is False
    s.release(A)
    assert late.fut.result() is True and s.held == {A: 1, C: 1}
    with pytest.raises(LockError, match="hold none"):
        s.release(B)
    s.release_holders(lambda holder, ident: holder == A, "gone")
    assert s.free == 1 and ledger.released_gone_holders == 1


def test_barrier_and_event_timeouts():
    clock, ledger = _setup()
    b = BarrierState("b", ledger, 3)
    first, second = _waiter(A, b, "barrier"), _waiter(B, b, "barrier")
    b.arrive(first, 2.0)
    b.arrive(second, None)
    clock.advance(2.0)
    with pytest.raises(CallTimeout, match="2 of 3 arrived"):
        first.fut.result()
    b.arrive(_waiter(A, b, "barrier"), None)
    last = _waiter(C, b, "barrier")
    b.arrive(last, None)
    assert second.fut.result() == 0 and last.fut.result() == 2 and b.arrived == [] and b.generation == 1
    e = EventState("e", ledger)
    timed, woken = _waiter(A, e, "event"), _waiter(B, e, "event")
    e.enqueue(timed, 0.5)
    e.enqueue(woken, None)
    clock.advance(0.5)
    assert timed.fut.result() is False
    e.set()
    assert woken.fut.result() is True and e.flag and clock.pending() == 0
