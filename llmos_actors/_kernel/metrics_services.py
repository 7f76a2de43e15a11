"""Prometheus metric families of the daemon's services: supervision, pages, topics, sync objects, scheduler.

Each function reads one service's state as it is now (see ``metrics.KernelCollector``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

#: The label value that stands for every actor (or subscriber) past the cap.
OVERFLOW = "_overflow"


def num(value: Any) -> float:
    """A reported number as a float (anything else counts as 0: heartbeats are checked, not trusted)."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def supervision_metrics(sup: Any, cap: int) -> Iterator[Metric]:
    restarts = CounterMetricFamily("llmos_supervisor_restarts", "Restarts a supervisor made.", labels=["supervisor"])
    failed = GaugeMetricFamily(
        "llmos_supervisor_failed", "1 if a supervisor gave up (restart intensity exceeded).", labels=["supervisor"]
    )
    for node in list(sup.nodes.values())[:cap]:
        label = node.name or node.id
        restarts.add_metric([label], float(node.restarts))
        failed.add_metric([label], 1.0 if node.state == "failed" else 0.0)
    total = CounterMetricFamily("llmos_supervision_restarts", "Actor restarts the daemon made, in all.")
    total.add_metric([], float(sup.restarts))
    gave_up = CounterMetricFamily(
        "llmos_supervision_give_ups", "Times a restart limit was exceeded and restarts stopped."
    )
    gave_up.add_metric([], float(sup.gave_up))
    yield from (restarts, failed, total, gave_up)


def pages_metrics(status: dict) -> Iterator[Metric]:
    if not status.get("pool_bytes"):
        return
    gauges = {
        "pool_bytes": "Size of the shared-memory page pool.",
        "used_bytes": "Bytes of the page pool in use.",
        "resident_bytes": "Bytes of the page pool backed by memory now.",
        "largest_free_bytes": "Largest free run of pages.",
        "holders": "Processes holding pages.",
        "transfers": "Page transfers in flight (handed over, not yet taken).",
        "objects": "Objects in the object store.",
        "objects_spilled": "Objects spilled to disk now.",
    }
    for key, help_text in gauges.items():
        g = GaugeMetricFamily(f"llmos_pages_{key}", help_text)
        g.add_metric([], num(status.get(key)))
        yield g
    free = GaugeMetricFamily("llmos_pages_free_bytes", "Bytes of the page pool free.")
    free.add_metric([], num(status.get("pool_bytes")) - num(status.get("used_bytes")))
    yield free
    counters = {
        "spills": "Objects spilled from the pool to disk.",
        "restores": "Spilled objects read back into the pool.",
        "spilled_bytes": "Bytes spilled to disk.",
        "restored_bytes": "Bytes read back from disk.",
        "expired_transfers": "Page transfers never taken before their deadline.",
        "exhausted": "Allocations refused because the pool was full.",
    }
    for key, help_text in counters.items():
        c = CounterMetricFamily(f"llmos_pages_{key}", help_text)
        c.add_metric([], num(status.get(key)))
        yield c


def topic_metrics(bus: Any, cap: int) -> Iterator[Metric]:
    for key, help_text in (
        ("published", "Topic messages published."),
        ("delivered", "Topic messages delivered to subscribers."),
        ("dropped", "Topic messages dropped because a subscriber's queue was full."),
    ):
        c = CounterMetricFamily(f"llmos_topic_{key}", help_text)
        c.add_metric([], num(getattr(bus, key, 0)))
        yield c
    subs = GaugeMetricFamily("llmos_topic_subscribers", "Connected topic subscribers.")
    subs.add_metric([], float(len(bus.subscribers)))
    yield subs
    delivered = CounterMetricFamily(
        "llmos_topic_subscriber_delivered", "Topic messages delivered, per subscriber.", labels=["subscriber"]
    )
    dropped = CounterMetricFamily(
        "llmos_topic_subscriber_dropped", "Topic messages dropped, per subscriber.", labels=["subscriber"]
    )
    rows = sorted((s.describe() for s in bus.subscribers.values()), key=lambda r: -r["dropped"])
    seen: dict[str, list[float]] = {}
    for i, row in enumerate(rows):
        who = str(row["who"])[:64] if i < cap else OVERFLOW
        acc = seen.setdefault(who, [0.0, 0.0])
        acc[0] += row["delivered"]
        acc[1] += row["dropped"]
    for who, (n_delivered, n_dropped) in seen.items():
        delivered.add_metric([who], n_delivered)
        dropped.add_metric([who], n_dropped)
    yield delivered
    yield dropped


def sync_metrics(sync: Any) -> Iterator[Metric]:
    objects = GaugeMetricFamily("llmos_sync_objects", "Kernel sync objects, by kind.", labels=["kind"])
    waiters = GaugeMetricFamily("llmos_sync_waiters", "Requests waiting on sync objects now, by kind.", labels=["kind"])
    waiting = GaugeMetricFamily(
        "llmos_sync_wait_seconds", "Seconds the current waiters have waited, in all, by kind.", labels=["kind"]
    )
    longest = GaugeMetricFamily("llmos_sync_longest_wait_seconds", "Longest wait on a sync object going on now.")
    granted = CounterMetricFamily("llmos_sync_granted", "Acquires and waits granted, by kind.", labels=["kind"])
    now = sync.ledger.clock.time()
    by_kind: dict[str, list[float]] = {}
    worst = 0.0
    for obj in sync.objects.values():
        acc = by_kind.setdefault(obj.kind, [0.0, 0.0, 0.0, 0.0])
        acc[0] += 1
        acc[3] += num(getattr(obj, "granted", 0))
        for queue in obj.queues():
            for w in queue:
                acc[1] += 1
                acc[2] += now - w.since
                worst = max(worst, now - w.since)
    for kind, (n, w, secs, g) in sorted(by_kind.items()):
        objects.add_metric([kind], n)
        waiters.add_metric([kind], w)
        waiting.add_metric([kind], secs)
        granted.add_metric([kind], g)
    longest.add_metric([], worst)
    deadlocks = CounterMetricFamily("llmos_sync_deadlocks", "Deadlocks the kernel detected (and refused).")
    deadlocks.add_metric([], float(sync.ledger.deadlocks_detected))
    yield from (objects, waiters, waiting, longest, granted, deadlocks)


def scheduler_metrics(sched: Any) -> Iterator[Metric]:
    decisions = CounterMetricFamily(
        "llmos_scheduler_decisions",
        "Decisions of the adaptive scheduler, by kind (move, renice, grow, ...).",
        labels=["kind"],
    )
    for kind, n in sorted(sched.decide.counts.items()):
        decisions.add_metric([kind], float(n))
    pools = GaugeMetricFamily("llmos_scheduler_pools", "Actor pools the scheduler sizes.")
    pools.add_metric([], float(len(sched.pools.by_name)))
    yield decisions
    yield pools
