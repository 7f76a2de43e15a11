"""The blocking and the asyncio client expose the same operations (they are derived from one definition)."""

from __future__ import annotations

import inspect

import pytest

import llmos_actors as llmos
from llmos_actors import _ops

PAIRS = [
    (llmos.Kernel, llmos.AsyncKernel),
    (llmos.ActorRef, llmos.AsyncActorRef),
    (llmos.Mutex, llmos.AsyncMutex),
    (llmos.Semaphore, llmos.AsyncSemaphore),
    (llmos.Condition, llmos.AsyncCondition),
    (llmos.Barrier, llmos.AsyncBarrier),
    (llmos.Event, llmos.AsyncEvent),
    (llmos.Supervisor, llmos.AsyncSupervisor),
    (llmos.Monitor, llmos.AsyncMonitor),
    (llmos.Pool, llmos.AsyncPool),
    (llmos.Subscription, llmos.AsyncSubscription),
    (llmos.StreamCall, llmos.AsyncStreamCall),
]

#: Names only one flavour has, each for a reason of its protocol (not an operation).
FLAVOUR_ONLY = {
    "aclose",  # AsyncStreamCall: the async iterator protocol's close (close() exists in both)
}


def _public(cls: type) -> set[str]:
    return {name for name in dir(cls) if not name.startswith("_")} - FLAVOUR_ONLY


@pytest.mark.parametrize("blocking, awaiting", PAIRS, ids=[b.__name__ for b, _ in PAIRS])
def test_same_public_names(blocking: type, awaiting: type) -> None:
    assert _public(blocking) == _public(awaiting)


@pytest.mark.parametrize("blocking, awaiting", PAIRS, ids=[b.__name__ for b, _ in PAIRS])
def test_operations_are_coroutines_on_the_asyncio_side(blocking: type, awaiting: type) -> None:
    for name in _public(blocking):
        sync_attr = getattr(blocking, name)
        raw = inspect.getattr_static(blocking, name)
        if isinstance(raw, _ops.operation):
            assert not inspect.iscoroutinefunction(sync_attr), f"{blocking.__name__}.{name}"
            assert inspect.iscoroutinefunction(getattr(awaiting, name)), f"{awaiting.__name__}.{name}"
            assert inspect.signature(sync_attr) == inspect.signature(getattr(awaiting, name))


def test_the_asyncio_kernel_has_what_the_blocking_one_had() -> None:
    # Once written twice by hand, the asyncio side had drifted: no logs, closed, __repr__, children.
    assert inspect.iscoroutinefunction(llmos.AsyncKernel.logs)
    assert isinstance(inspect.getattr_static(llmos.AsyncKernel, "closed"), property)
    assert llmos.AsyncKernel.__repr__ is llmos.Kernel.__repr__
    assert inspect.iscoroutinefunction(llmos.AsyncSupervisor.children)


def test_with_forms() -> None:
    for blocking, awaiting in [(llmos.Mutex, llmos.AsyncMutex), (llmos.Supervisor, llmos.AsyncSupervisor)]:
        assert hasattr(blocking, "__enter__") and hasattr(awaiting, "__aenter__")
    assert not hasattr(llmos.Event, "__enter__")


def test_operations_run_their_steps_in_both_flavours() -> None:
    """One definition, two drivers: the blocking one calls each step, the asyncio one awaits it."""
    import asyncio

    class CounterOps(_ops.Surface):
        def __init__(self) -> None:
            self.seen: list = []

        @_ops.operation
        def add(self, a: int, b: int) -> int:
            if a < 0:
                raise ValueError("a must be >= 0")
            total = yield _ops.Step(self._step, a + b)
            more = yield _ops.offload(lambda: total * 10)
            return more

    class Counter(CounterOps, _ops.Blocking):
        def _step(self, value: int) -> int:
            self.seen.append(value)
            return value

    class AsyncCounter(CounterOps, _ops.Awaiting):
        async def _step(self, value: int) -> int:
            self.seen.append(value)
            return value

    c = Counter()
    assert c.add(1, 2) == 30 and c.seen == [3]
    with pytest.raises(ValueError):
        c.add(-1, 2)
    a = AsyncCounter()
    assert asyncio.run(a.add(2, 2)) == 40 and a.seen == [4]
    assert _ops.twin(CounterOps, True) is Counter and _ops.twin(CounterOps, False) is AsyncCounter


def test_a_step_error_reaches_the_operation() -> None:
    """A step's error is raised inside the operation, so it can withdraw what it started."""
    undone: list = []

    def fail() -> None:
        raise KeyboardInterrupt

    class JobOps(_ops.Surface):
        @_ops.operation
        def run(self) -> None:
            try:
                yield _ops.Step(fail)
            except BaseException:
                undone.append(True)
                raise

    class Job(JobOps, _ops.Blocking):
        pass

    with pytest.raises(KeyboardInterrupt):
        Job().run()
    assert undone == [True]
