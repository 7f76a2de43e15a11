"""Restart policy as pure objects: limits, the restart history with its backoff, supervisor nodes.

No loop and no processes here: ``RestartHistory`` reads an injected clock, so
its tests move time by hand. The supervisor service (``supervisor``) applies
them to actors.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .. import _validate as check

#: Defaults of the ``[supervisor]`` config section.
DEFAULT_LIMITS = {"intensity": 5, "period": 10.0, "backoff": 0.1, "backoff_max": 5.0}
LIMIT_KEYS = check.RESTART_LIMIT_KEYS


def check_limits(values: Any, what: str) -> dict:
    """Validate restart limits (a map of a subset of ``LIMIT_KEYS``); returns a clean copy.

    Raises:
        InvalidArgument: unknown key or a value out of range.
    """
    return check.restart_limits(values, what)


def needs_restart(policy: str, abnormal: bool) -> bool:
    return policy == "permanent" or (policy == "transient" and abnormal)


@dataclass
class RestartHistory:
    """Restarts within the last ``period`` seconds, and the backoff they imply."""

    intensity: int
    period: float
    backoff: float
    backoff_max: float
    clock: Callable[[], float] = time.monotonic
    times: deque = field(default_factory=deque)

    @classmethod
    def of(cls, limits: dict, clock: Callable[[], float]) -> RestartHistory:
        return cls(
            int(limits["intensity"]),
            float(limits["period"]),
            float(limits["backoff"]),
            float(limits["backoff_max"]),
            clock,
        )

    def allow(self) -> bool:
        """Count one more restart; False (and nothing counted) if that would exceed the intensity."""
        now = self.clock()
        times = self.times
        while times and times[0] <= now - self.period:
            times.popleft()
        if len(times) >= self.intensity:
            return False
        times.append(now)
        return True

    def delay(self) -> float:
        """Seconds to wait before the restart just allowed: 0 for the first in the window."""
        k = len(self.times)
        if k <= 1:
            return 0.0
        return min(self.backoff_max, self.backoff * 2 ** (k - 2))

    def clear(self) -> None:
        self.times.clear()


@dataclass(eq=False)
class SupervisorNode:
    """One supervisor: its strategy, limits, and children (actor and supervisor ids) in start order."""

    id: str
    name: str
    strategy: str
    limits: dict
    restart: str  # its own policy as a child of its parent
    parent: SupervisorNode | None
    history: RestartHistory
    children: list[str] = field(default_factory=list)
    state: str = "running"  # running | restarting | failed | stopping
    restarts: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    reason: str = ""

    @property
    def label(self) -> str:
        return self.name or self.id

    @property
    def root(self) -> SupervisorNode:
        node = self
        while node.parent is not None:
            node = node.parent
        return node

    def describe(self) -> dict:
        return {
            "id": self.id,
            "name": self.name,
            "strategy": self.strategy,
            "restart": self.restart,
            "parent": self.parent.id if self.parent else None,
            "children": list(self.children),
            "state": self.state,
            "restarts": self.restarts,
            "reason": self.reason,
            **self.limits,
        }
