"""What an operation waits on, and the two ways to drive an operation through its steps."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Generator
from typing import Any

#: An operation in progress: yields ``Step``s, receives their results, returns the public value.
Steps = Generator["Step", Any, Any]


class Step:
    """One thing an operation waits for: ``fn(*args, **kwargs)``.

    A blocking flavour calls it and takes its value; an asyncio flavour calls it and
    awaits the value when it is awaitable (``AsyncKernel._control`` returns a future,
    ``AsyncActorRef.call`` a coroutine). ``offload`` marks plain blocking functions
    (mapping pages, waiting on the pages channel) that asyncio runs in a worker thread.
    """

    __slots__ = ("args", "fn", "kwargs", "offload")

    def __init__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.offload = False


def offload(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Step:
    """A step that blocks in plain code: the asyncio flavour runs it in a thread."""
    step = Step(fn, *args, **kwargs)
    step.offload = True
    return step


def run_blocking(steps: Steps) -> Any:
    """Drive ``steps`` on this thread; an error of a step is raised inside the operation."""
    try:
        step = next(steps)
        while True:
            try:
                value = step.fn(*step.args, **step.kwargs)
            except BaseException as exc:  # the operation may clean up (withdraw a wait) and re-raise
                step = steps.throw(exc)
            else:
                step = steps.send(value)
    except StopIteration as stop:
        return stop.value


async def run_awaiting(steps: Steps) -> Any:
    """Drive ``steps`` on the running loop (cancellation reaches the operation as CancelledError)."""
    try:
        step = next(steps)
        while True:
            try:
                if step.offload:
                    value = await asyncio.to_thread(step.fn, *step.args, **step.kwargs)
                else:
                    value = step.fn(*step.args, **step.kwargs)
                    if inspect.isawaitable(value):
                        value = await value
            except BaseException as exc:
                step = steps.throw(exc)
            else:
                step = steps.send(value)
    except StopIteration as stop:
        return stop.value
