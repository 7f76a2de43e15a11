"""The call an actor's ``async def`` (or async generator) method is running for.

Set by the executor when such a method starts; a task it starts inherits it. An
agent reads it to hand its caller's priority, objective and deadline on to the
calls it makes in turn (to an LLM device, to tools, to other agents).
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from typing import Any

CURRENT_CALL: ContextVar[Any] = ContextVar("llmos_current_call", default=None)


def current_call_options() -> dict[str, Any]:
    """``priority``, ``objective`` and ``timeout`` (seconds left) of the current call; None where unset."""
    req = CURRENT_CALL.get()
    if req is None:
        return {"priority": None, "objective": None, "timeout": None}
    objective = req.head.get("objective") if isinstance(req.head, dict) else None
    left = None if req.deadline is None else max(0.001, req.deadline - time.monotonic())
    return {
        "priority": req.prio,
        "objective": objective if type(objective) in (int, float) else None,
        "timeout": left,
    }
