"""Goal-driven priorities: how a call's ``objective`` and deadline become a mailbox priority.

A call may carry ``ref.options(objective=x)`` (larger is more urgent) and/or a
``timeout`` (its deadline). The actor maps them to one of its mailbox's eight
levels with a *goal function* ``fn(objective, time_left, priority) -> level``:

- ``priority`` is the call's explicit priority option, else the actor's default;
- ``objective`` is the call's objective or None;
- ``time_left`` is seconds until the call's deadline, or None.

Choose one per actor class (``goal = staticmethod(my_goal)``) or per daemon (the
``[scheduler] goal = "package.module:function"`` config key). The default:
"""

from __future__ import annotations

import contextvars
import importlib

from .errors import ConfigError

#: A call whose deadline is this close is urgent.
URGENT_SECONDS = 0.05

#: The level (0..7, after the goal function) of the call an ``async def`` or async generator
#: method is running for: ``Actor.actor_call_priority`` reads it, so an actor that schedules
#: work of its own (the LLM device) can honour its callers' priorities.
CALL_LEVEL: contextvars.ContextVar[int | None] = contextvars.ContextVar("llmos_call_level", default=None)


def default_goal(objective: float | None, time_left: float | None, priority: int) -> int:
    """The built-in mapping.

    - An objective sets the level directly: ``round(objective)``, clamped to 0..7
      (so objectives on a 0..7 scale read as priorities; larger is more urgent).
    - A deadline less than 50 ms away raises the level by 2 (and an already
      expired call goes to the top: it is dropped unrun as soon as it is looked at).
    """
    level = priority if objective is None else round(objective)
    if time_left is not None:
        if time_left <= 0:
            level = 7
        elif time_left < URGENT_SECONDS:
            level += 2
    return 0 if level < 0 else 7 if level > 7 else level


def load_goal(spec: str):
    """Import a goal function named ``"package.module:function"``.

    Raises:
        ConfigError: it cannot be imported or is not callable.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep:
        raise ConfigError(f"goal function must be named 'module:function', not {spec!r}")
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot import goal function {spec!r}: {exc}") from exc
    if not callable(fn):
        raise ConfigError(f"goal function {spec!r} is not callable")
    return fn
