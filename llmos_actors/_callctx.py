"""The call an actor's ``async def`` (or async generator) method is running for.

Set by the executor beside ``scheduling.CALL_LEVEL`` when such a method starts; a
task it starts inherits it. An agent reads it to hand its caller's level and
deadline on to the calls it makes in turn (to an LLM device, to tools, to other agents).
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from typing import Any

from .scheduling import CALL_LEVEL

CURRENT_CALL: ContextVar[Any] = ContextVar("llmos_current_call", default=None)


def current_call_options() -> dict[str, Any]:
    """``priority`` (the call's level after the goal function) and ``timeout`` (seconds left); None where unset.

    The level already folds in the call's objective and deadline, so it is forwarded as a plain priority.
    """
    req = CURRENT_CALL.get()
    left = None if req is None or req.deadline is None else max(0.001, req.deadline - time.monotonic())
    return {"priority": CALL_LEVEL.get(), "timeout": left}
