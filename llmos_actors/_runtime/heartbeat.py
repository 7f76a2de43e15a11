"""What an actor's heartbeat carries: its executor's counters, timings, and its own hooks' reports.

``on_metrics()`` (numbers and histogram snapshots) and ``on_decisions()`` (maps) are the
actor's code: whatever they return is bounded and filtered here, and a hook that raises
is logged and reports nothing, so a bad hook never stops the heartbeat.
"""

from __future__ import annotations

import logging
from typing import Any

from .executor import ActorExecutor

log = logging.getLogger("llmos_actors.actor")


#: Most entries an actor's ``on_metrics()`` may report per heartbeat (the rest are left out).
MAX_CUSTOM_METRICS = 64


def actor_metrics(instance: Any) -> dict:
    """What the actor's ``on_metrics()`` hook reports: numbers and histogram snapshots, bounded."""
    hook = getattr(instance, "on_metrics", None)
    if not callable(hook):
        return {}
    try:
        values = hook()
    except Exception:
        log.exception("on_metrics raised")
        return {}
    if not isinstance(values, dict):
        return {}
    out: dict[str, Any] = {}
    for key, value in values.items():
        if len(out) >= MAX_CUSTOM_METRICS:
            break
        if isinstance(key, str) and (isinstance(value, (int, float, dict)) and not isinstance(value, bool)):
            out[key] = value
    return out


#: Most decisions an actor's ``on_decisions()`` may report per heartbeat (the rest are left out).
MAX_DECISIONS = 32


def actor_decisions(instance: Any) -> list:
    """What the actor's ``on_decisions()`` hook reports (maps only, at most ``MAX_DECISIONS``)."""
    hook = getattr(instance, "on_decisions", None)
    if not callable(hook):
        return []
    try:
        values = hook()
    except Exception:
        log.exception("on_decisions raised")
        return []
    return [v for v in values[:MAX_DECISIONS] if isinstance(v, dict)] if isinstance(values, list) else []


def heartbeat_stats(executor: ActorExecutor, driver_stats: dict, instance: Any) -> dict:
    """One heartbeat's body: counters, and (when metrics are on) timings and the actor's metrics."""
    stats = executor.snapshot()
    stats["unroutable"] = driver_stats.get("replies_unroutable", 0)
    timings = executor.timings
    if timings is not None:
        stats["timings"] = timings.snapshot()
        custom = actor_metrics(instance)
        if custom:
            stats["metrics"] = custom
    decisions = actor_decisions(instance)
    if decisions:
        stats["decisions"] = decisions
    return stats
