"""``operation`` (a generator method, written once) and the two flavours that run it."""

from __future__ import annotations

import functools
from collections.abc import Callable
from types import MethodType
from typing import Any

from .steps import Step, run_awaiting, run_blocking

#: (family, blocking) -> the concrete class: ``(MutexOps, False)`` -> ``AsyncMutex``.
_TWINS: dict[tuple[type, bool], type] = {}


class operation:
    """Marks a generator method as an operation; each flavour turns it into its own method.

    On a flavour-neutral class (``KernelOps``) the attribute is the generator function
    itself, so one operation can run another's steps: ``yield from KernelOps.spawn_with(...)``.
    """

    def __init__(self, steps: Callable[..., Any]) -> None:
        self.steps = steps
        self._made: dict[bool, Callable[..., Any]] = {}
        functools.update_wrapper(self, steps)  # type: ignore[arg-type]

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        blocking = getattr(owner if owner is not None else type(obj), "_blocking", None)
        fn = self.steps if blocking is None else self._made.get(blocking) or self._make(blocking)
        return fn if obj is None else MethodType(fn, obj)

    def _make(self, blocking: bool) -> Callable[..., Any]:
        steps = self.steps
        if blocking:

            def method(self: Any, *args: Any, **kwargs: Any) -> Any:
                return run_blocking(steps(self, *args, **kwargs))

        else:

            async def method(self: Any, *args: Any, **kwargs: Any) -> Any:  # type: ignore[misc]
                return await run_awaiting(steps(self, *args, **kwargs))

        functools.update_wrapper(method, steps)
        self._made[blocking] = method
        return method


class Surface:
    """What every client object shares, whatever its flavour.

    Subclasses name the kernel handle they talk through as ``_kernel``.
    """

    __slots__ = ()
    _blocking: bool  # set by the flavour (Blocking or Awaiting)
    _kernel: Any

    @operation
    def _enter(self) -> Any:
        """What ``with`` / ``async with`` gives: the object itself (families with a lock acquire it)."""
        return self
        yield  # an operation with no step

    def _daemon(self, method: str, *args: Any, **kwargs: Any) -> Step:
        """A step: the control request ``method`` to the daemon (keyword ``timeout`` bounds it)."""
        return Step(self._kernel._control, method, *args, **kwargs)

    def _twin(self, family: type) -> Any:
        """This object's flavour of ``family``: ``self._twin(MutexOps)`` is ``Mutex`` or ``AsyncMutex``."""
        return twin(family, bool(self._blocking))


def twin(family: type, blocking: bool) -> Any:
    return _TWINS[(family, blocking)]


def _register(cls: type, blocking: bool) -> None:
    for base in cls.__bases__:
        if issubclass(base, Surface) and not issubclass(base, (Blocking, Awaiting)):
            _TWINS.setdefault((base, blocking), cls)


class Blocking:
    """The synchronous flavour: an operation blocks the calling thread until its steps are done.

    A class whose family defines ``_enter``/``_exit`` operations gets ``with`` from them.
    """

    __slots__ = ()
    _blocking = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _register(cls, True)
        if hasattr(cls, "_exit") and "__exit__" not in cls.__dict__:
            cls.__enter__ = _enter  # type: ignore[attr-defined]
            cls.__exit__ = _exit  # type: ignore[attr-defined]


class Awaiting:
    """The asyncio flavour: operations are coroutines; ``async with`` comes from ``_enter``/``_exit``."""

    __slots__ = ()
    _blocking = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _register(cls, False)
        if hasattr(cls, "_exit") and "__aexit__" not in cls.__dict__:
            cls.__aenter__ = _aenter  # type: ignore[attr-defined]
            cls.__aexit__ = _aexit  # type: ignore[attr-defined]


def _enter(self: Any) -> Any:
    return self._enter()


def _exit(self: Any, *exc: Any) -> None:
    self._exit()


async def _aenter(self: Any) -> Any:
    return await self._enter()


async def _aexit(self: Any, *exc: Any) -> None:
    await self._exit()
