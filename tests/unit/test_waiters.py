"""``LlmosFuture``: a ``concurrent.futures.Future`` whose futures may share one condition."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading

import pytest

from llmos_actors._rpc.waiters import LlmosFuture


def test_shared_condition_futures_behave_as_plain_ones() -> None:
    cond = threading.Condition()
    a, b, c = LlmosFuture(cond), LlmosFuture(cond), LlmosFuture(cond)
    seen: list = []
    a.add_done_callback(lambda f: seen.append(f.result()))
    with pytest.raises(concurrent.futures.TimeoutError):
        a.result(timeout=0.01)
    # b resolving wakes a's waiter too (shared condition): a must keep waiting, not time out.
    waiter = threading.Thread(target=lambda: seen.append(("waited", a.result(timeout=30))))
    waiter.start()
    b.resolve(True, "b")
    c.resolve(False, ValueError("c failed"))
    a.resolve(True, "a")
    waiter.join(30)
    assert sorted(map(str, seen)) == ["('waited', 'a')", "a"]
    assert b.result() == "b" and b.done()
    with pytest.raises(ValueError, match="c failed"):
        c.result()
    assert isinstance(c.exception(), ValueError)
    a.resolve(True, "again")  # resolved once only
    assert a.result() == "a"


def test_wait_as_completed_cancel_and_await() -> None:
    cond = threading.Condition()
    futs = [LlmosFuture(cond) for _ in range(3)]
    assert futs[2].cancel()
    futs[2].resolve(True, "late")  # a reply after cancel is dropped
    timer = threading.Timer(0.01, lambda: [f.resolve(True, i) for i, f in enumerate(futs[:2])])
    timer.start()
    done, not_done = concurrent.futures.wait(futs, timeout=30)
    assert len(done) == 3 and not not_done
    assert sorted(f.result() for f in concurrent.futures.as_completed(futs[:2])) == [0, 1]
    with pytest.raises(concurrent.futures.CancelledError):
        futs[2].result()

    async def main() -> object:
        fut = LlmosFuture(cond)
        asyncio.get_running_loop().call_later(0.01, fut.resolve, True, "awaited")
        return await fut

    assert asyncio.run(main()) == "awaited"
    timer.join()


def test_a_future_of_its_own() -> None:
    fut = LlmosFuture()
    fut.resolve(True, 1)
    assert fut.result() == 1
