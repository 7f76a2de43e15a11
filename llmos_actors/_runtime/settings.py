"""How an actor takes work: mailbox size and policy, concurrency, priority, goal.

Each setting comes from the spawn options, else the actor class's attribute of
that name, else the daemon's config (the ``[scheduler]`` section for the
mailbox policy). The mailbox level of a request is policy too: its priority,
or what the goal function makes of its objective and time left.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..scheduling import default_goal, load_goal
from .mailbox import DEFAULT_AGING, DEFAULT_FLOOD_SHARE, DEFAULT_PRIORITY, FifoMailbox, Mailbox

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExecutorSettings:
    mailbox_size: int = 10_000
    overflow: str = "block"
    max_concurrency: int = 1
    max_async: int = 1000
    topic_backlog: int = 10_000
    priority: int = DEFAULT_PRIORITY
    mailbox_policy: str = "priority"
    aging: float = DEFAULT_AGING
    flood_share: float = DEFAULT_FLOOD_SHARE
    goal: Callable[[Any, Any, int], int] | None = None

    @classmethod
    def pick(cls, spec: dict, actor_cls: type, config: Any) -> ExecutorSettings:
        """Spawn options, else the class's attributes, else the config."""

        def pick(key: str, default: Any) -> Any:
            value = spec.get(key)
            if value is None:
                value = getattr(actor_cls, key, None)
            return default if value is None else value

        sched = dict(config.extra.get("scheduler", {}))
        goal = getattr(actor_cls, "goal", None)
        if goal is None and sched.get("goal"):
            goal = load_goal(str(sched["goal"]))
        return cls(
            mailbox_size=int(pick("mailbox_size", config.mailbox_size)),
            overflow=str(pick("overflow", config.overflow)),
            max_concurrency=int(pick("max_concurrency", 1)),
            max_async=int(pick("max_async", 1000)),
            priority=int(spec.get("priority", DEFAULT_PRIORITY)),
            mailbox_policy=str(pick("mailbox_policy", sched.get("mailbox_policy", "priority"))),
            aging=float(pick("mailbox_aging", sched.get("aging", DEFAULT_AGING))),
            flood_share=float(pick("flood_share", sched.get("flood_share", DEFAULT_FLOOD_SHARE))),
            goal=goal,
        )

    def make_mailbox(self) -> Mailbox:
        cls = FifoMailbox if self.mailbox_policy == "fifo" else Mailbox
        return cls(self.mailbox_size, default_priority=self.priority, aging=self.aging, flood_share=self.flood_share)

    def level_of(self, req: Any, now: float) -> int | None:
        """The mailbox level for a request: its priority, or its goal's (objective, deadline)."""
        prio = req.prio
        objective = req.head.get("objective")
        if objective is None and req.deadline is None:
            return prio
        time_left = None if req.deadline is None else req.deadline - now
        base = self.priority if prio is None else prio
        try:
            goal = self.goal or default_goal
            return int(goal(objective if type(objective) in (int, float) else None, time_left, base))
        except Exception:
            log.exception("goal function failed; using priority %s", base)
            return base
