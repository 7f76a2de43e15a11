"""What the live dashboard shows, as one JSON-ready dict built from the daemon's state.

Bounded: at most ``max_actors`` actor rows (live first), the last 20 scheduler
decisions, 50 sync waits. The browser keeps the history for its sparklines.
"""

from __future__ import annotations

import os
import time
from typing import Any

from .._version import __version__

#: Per-actor numbers the dashboard plots or lists (from heartbeats).
ACTOR_STATS = ("calls", "done", "failed", "queued", "active", "streams", "topic_drops")


def _llm_summary(metrics: Any) -> dict | None:
    """An LLM device's batch and KV numbers, from its ``on_metrics()`` report."""
    if not isinstance(metrics, dict):
        return None
    out = {
        k.removeprefix("llm_"): v
        for k, v in metrics.items()
        if isinstance(k, str) and k.startswith("llm_") and isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    return out or None


def dashboard_state(daemon: Any, max_actors: int) -> dict:
    """The dashboard's view of the daemon now."""
    table = daemon.table
    records = table.all()
    live = sorted((r for r in records if r.live), key=lambda r: r.created)
    gone = sorted((r for r in records if not r.live), key=lambda r: -r.created)
    shown = (live + gone)[:max_actors]
    rows = []
    for r in shown:
        stats = r.stats
        row = {
            "id": r.id,
            "name": r.name,
            "cls": r.cls,
            "state": r.state,
            "pid": r.pid,
            "cpus": r.cpus,
            "priority": r.priority,
            "nice": r.nice,
            "restarts": r.restarts,
            "supervisor": r.supervisor,
            "stats": {k: stats.get(k, 0) for k in ACTOR_STATS},
            "levels": stats.get("levels") or [],
        }
        llm = _llm_summary(stats.get("metrics"))
        if llm:
            row["llm"] = llm
        rows.append(row)
    daemon.add_usage(rows)  # cpu_percent, rss, core (psutil) and the scheduler's note
    sup = daemon.supervision
    sched = daemon.scheduler
    sync_status = daemon.sync.status()
    topics = daemon.events.status()
    return {
        "time": time.time(),
        "daemon": {
            "version": __version__,
            "pid": os.getpid(),
            "uptime": time.time() - daemon.started,
            "runtime_dir": str(daemon.config.runtime_dir),
            "counts": table.counts(),
        },
        "actors": rows,
        "actors_total": len(records),
        "supervisors": [n.describe() for n in list(sup.nodes.values())[:max_actors]],
        "pages": daemon.pages.status(),
        "topics": {k: topics.get(k) for k in ("subscribers", "published", "delivered", "dropped", "slowest")},
        "sync": {
            "objects": sync_status.get("objects"),
            "waits": sync_status.get("waits", [])[:50],
            "busy": sync_status.get("busy", [])[:20],
            "deadlocks_detected": sync_status.get("deadlocks_detected", 0),
        },
        "scheduler": {"decisions": list(sched.decide.recent)[-20:], "pools": len(sched.pools.by_name)},
    }
