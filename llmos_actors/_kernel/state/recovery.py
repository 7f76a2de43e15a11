"""Recovery at start: bring back what the journal says should live, in dependency order.

Supervisors first (parents before children, each with its id and name), then actors with
their ids, names and endpoints unchanged, so refs held by clients work again: one tree
at a time in start order (a child's supervisor and elder siblings are up before it),
trees and standalone actors in parallel. Then pools, sync objects and detached objects.

An actor that cannot come back (its class no longer imports, ``__init__`` raises) is
left exited with the reason (``llmos ps`` shows it), marked in the journal, and not
retried until the next start.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from ..restart_policy import RestartHistory, SupervisorNode
from . import journal as J

log = logging.getLogger(__name__)

#: Trees (and standalone actors) started at once.
PARALLEL = 16


def _root_of(supervisors: dict[str, dict], node_id: str) -> str:
    seen = set()
    while node_id in supervisors and node_id not in seen:
        seen.add(node_id)
        parent = supervisors[node_id]["spec"].get("parent")
        if not parent or parent not in supervisors:
            return node_id
        node_id = parent
    return node_id


async def recover(state: Any) -> dict:
    """Replay the journal into the running daemon; returns counts for the log and ``llmos status``."""
    started = time.monotonic()
    d = state.daemon
    journal = state.journal
    supervisors = {row["id"]: row for row in journal.specs("supervisors")}
    actors = journal.specs("actors")
    seqs = {row["id"]: row["seq"] for row in [*supervisors.values(), *actors]}
    _rebuild_supervisors(d.supervision, list(supervisors.values()))
    snapshots = {row["actor_id"]: row["file"] for row in journal.rows("snapshots")}

    groups: dict[str, list[dict]] = {}
    for row in actors:
        sup = row["spec"].get("supervisor") or ""
        key = _root_of(supervisors, sup) if sup in supervisors else row["id"]
        if sup and sup not in supervisors:
            row["spec"]["supervisor"] = ""  # its supervisor is gone from the journal: bring it back alone
        groups.setdefault(key, []).append(row)
    gate = asyncio.Semaphore(PARALLEL)
    results: dict[str, Any] = {"recovered": 0, "failed": 0}

    async def bring_back(rows: list[dict]) -> None:
        async with gate:
            for row in rows:
                ok = await _spawn(state, row, snapshots.get(row["id"]))
                results["recovered" if ok else "failed"] += 1

    await asyncio.gather(*(bring_back(rows) for rows in groups.values()))
    for node in d.supervision.nodes.values():
        node.children.sort(key=lambda child: seqs.get(child, 1 << 62))
    pools = 0
    for row in journal.specs("pools"):
        try:
            spec = dict(row["spec"])
            dispatcher_id = spec.pop("dispatcher_id", None) or None  # journalled by older daemons without it
            await d.scheduler.pools.create(spec, dispatcher_id)
            pools += 1
        except Exception as exc:
            log.warning("pool %s not recovered: %s", row["name"], exc)
    sync = state.restore_sync_objects()
    objects = state.objects.restore() if state.objects is not None else 0
    results.update(
        supervisors=len(supervisors),
        pools=pools,
        sync_objects=sync,
        objects=objects,
        ms=round((time.monotonic() - started) * 1000, 1),
    )
    log.info("recovered from %s: %s", journal.path, results)
    return results


def _rebuild_supervisors(supervision: Any, rows: list[dict]) -> None:
    for row in rows:  # creation order: a parent before its children
        spec = row["spec"]
        parent = supervision.nodes.get(spec.get("parent") or "")
        limits = {**supervision.defaults, **(spec.get("limits") or {})}
        node = SupervisorNode(
            row["id"],
            row["name"],
            spec.get("strategy") or "one_for_one",
            limits,
            spec.get("restart") or "permanent",
            parent,
            RestartHistory.of(limits, supervision.clock),
        )
        supervision.nodes[node.id] = node
        if parent is not None:
            parent.children.append(node.id)


async def _spawn(state: Any, row: dict, snapshot: str | None) -> bool:
    d = state.daemon
    request = dict(row["spec"])
    request.pop("snapshot", None)
    owner = request.pop("owner", None) or "daemon"
    internal = {"snapshot": snapshot} if snapshot else {}
    if request.get("grants"):
        internal["grants"] = request.pop("grants")  # the daemon's to set (kernel.grant), never a spawn's
    if request.get("subscriptions"):
        internal["subscriptions"] = request.pop("subscriptions")
    else:
        request.pop("subscriptions", None)
    try:
        d.services.check_spawn(request)
        await d.lifecycle.spawn(request, owner, actor_id=row["id"], internal=internal)
        state.journaled.add(row["id"])
        return True
    except Exception as exc:
        reason = f"not recovered: {exc}".splitlines()[0]
        log.warning("actor %s (%s): %s", row["name"] or row["id"], request.get("cls"), reason)
        record = d.table.by_id.get(row["id"])
        if record is not None and record.exit is not None:
            record.exit["reason"] = reason
        state.journaled.add(row["id"])  # stays in the journal (fix the class, restart the daemon)
        state.problems[row["id"]] = reason
        await journal_write(state, J.actor_problem(row["id"], reason))
        return False


async def journal_write(state: Any, *ops: Any) -> None:
    try:
        await state.journal.submit(*ops)
    except Exception as exc:
        log.error("journal write failed: %s", exc)
