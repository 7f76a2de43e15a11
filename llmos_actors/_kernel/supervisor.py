"""Supervision: restart policies, restart intensity with backoff, and OTP-style supervisor trees.

Every actor belongs to a supervisor node or stands alone. When an incarnation
dies, ``decide`` (called by the lifecycle *before* the death is announced, so the
notice can say ``"restarting": true``) applies the actor's policy:

- ``permanent`` restarts after any exit, ``transient`` only after an abnormal one
  (non-zero exit code or a signal), ``temporary`` never;
- an actor stopped by request (``kill``) or whose first incarnation never became
  ready (the ``spawn`` call itself failed) is never restarted.

Restart intensity: at most ``intensity`` restarts within ``period`` seconds,
counted per supervisor (per actor for standalone actors). One more, and the
supervisor gives up: it stops its children (in reverse start order) and
escalates to its parent, which treats it as a failed child; a top-level
supervisor (or a standalone actor) that gives up stays down and says so on
``sys.supervisor.gave_up``. Restarts within a window back off exponentially:
the first is immediate, the k-th waits ``backoff * 2**(k-2)`` capped at
``backoff_max``. The clock and the sleep are injectable, so tests of the
policy need not wait.

Strategies decide which siblings restart with a failed child: ``one_for_one``
(only it), ``one_for_all`` (all), ``rest_for_one`` (it and those started after
it). Siblings are stopped in reverse start order, then everyone restarts in
start order, each waiting for the previous one's READY. Work on one tree is
serialised by the tree's lock; standalone actors restart independently
(``supervision_work`` carries the decisions out).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

from .. import _validate as check
from .._rpc.server import Request
from ..errors import ConfigError, ProtocolError, SupervisorError
from .lifecycle import Lifecycle
from .proctable import EXITED, RESTARTING, ActorRecord, ProcessTable
from .restart_policy import DEFAULT_LIMITS, RestartHistory, SupervisorNode, check_limits, needs_restart
from .service import Service
from .supervision_work import Sleep, SupervisionWork, Work

log = logging.getLogger(__name__)


class Supervision(SupervisionWork, Service):
    """The daemon's supervisor: restart decisions, supervisor nodes, and the work they schedule."""

    name = "supervisor"

    def __init__(
        self,
        lifecycle: Lifecycle,
        table: ProcessTable,
        settings: Any = None,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        publish: Callable[[str, dict], None] | None = None,
    ) -> None:
        self.lifecycle = lifecycle
        self.table = table
        try:
            self.defaults = {**DEFAULT_LIMITS, **check_limits(dict(settings or {}), "config section [supervisor]")}
        except ProtocolError as exc:
            raise ConfigError(str(exc)) from None
        self.loop = loop
        self.clock = clock
        self.sleep = sleep
        self.nodes: dict[str, SupervisorNode] = {}
        self.standalone: dict[str, RestartHistory] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task] = set()
        self._deciding: ActorRecord | None = None
        self.publish = publish or (lambda topic, body: None)
        self.restarts = 0
        self.gave_up = 0

    # ------------------------------------------------------------------ service
    def handlers(self) -> dict[str, Callable[..., Any]]:
        return {
            "supervisor_new": self.h_new,
            "supervisor_stop": self.h_stop,
            "supervisors": self.h_list,
        }

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    def status(self) -> dict:
        times = sorted(self.lifecycle.restart_times)
        out: dict[str, Any] = {
            "supervisors": len(self.nodes),
            "restarts": self.restarts,
            "gave_up": self.gave_up,
            "restarting": sum(1 for r in self.table.by_id.values() if r.state == RESTARTING),
        }
        if times:
            out["restart_ms_p50"] = round(times[len(times) // 2] * 1000, 2)
            out["restart_ms_p99"] = round(times[min(len(times) - 1, int(len(times) * 0.99))] * 1000, 2)
        return out

    # ------------------------------------------------------------------ control handlers
    def h_new(self, req: Request, spec: Any = None) -> dict:
        """Create a supervisor node: ``{name, strategy, parent, restart, intensity, period, backoff, backoff_max}``."""
        if not isinstance(spec, dict):
            raise ProtocolError("supervisor_new takes one map describing the supervisor")
        spec = dict(spec)
        strategy = check.strategy(spec.pop("strategy", None) or "one_for_one")
        restart = check.restart_policy(spec.pop("restart", None) or "permanent")
        name = check.supervisor_name(spec.pop("name", None))
        if name and any(n.name == name for n in self.nodes.values()):
            raise SupervisorError(f"a supervisor named {name!r} already exists")
        parent_id = spec.pop("parent", None)
        parent = self.node(parent_id) if parent_id else None
        if parent is not None and parent.state != "running":
            raise SupervisorError(f"supervisor {parent.label!r} is {parent.state}")
        limits = {**self.defaults, **check_limits(spec, "supervisor limits")}
        node_id = "s" + secrets.token_hex(5)
        node = SupervisorNode(node_id, name, strategy, limits, restart, parent, RestartHistory.of(limits, self.clock))
        self.nodes[node_id] = node
        if parent is not None:
            parent.children.append(node_id)
        return node.describe()

    async def h_stop(self, req: Request, target: Any, grace: Any = None) -> dict:
        """Stop a supervisor: its children in reverse start order, then the node itself."""
        node = self.node(target)
        return await self.stop_node(node, check.timeout(grace, "grace"))

    def h_list(self, req: Request) -> list[dict]:
        return [n.describe() for n in self.nodes.values()]

    def node(self, target: Any) -> SupervisorNode:
        if not isinstance(target, str) or not target:
            raise ProtocolError("supervisor must be named by a non-empty string (id or name)")
        node = self.nodes.get(target) or next((n for n in self.nodes.values() if n.name == target), None)
        if node is None:
            raise SupervisorError(f"no supervisor {target!r}")
        return node

    # ------------------------------------------------------------------ spawning
    def check_spawn(self, request: dict) -> None:
        """Validate a spawn's supervision settings before anything forks (and fill in defaults)."""
        request["restart_limits"] = check_limits(request.get("restart_limits"), "restart limits")
        if request.get("restart") is not None:
            check.restart_policy(request["restart"])
        target = request.get("supervisor")
        if target:
            node = self.node(target)
            if node.state != "running":
                raise SupervisorError(f"supervisor {node.label!r} is {node.state}: it takes no new children")
            if request["restart_limits"]:
                raise SupervisorError(
                    "restart limits of a supervised actor are its supervisor's (intensity, period, backoff)"
                )
            request["supervisor"] = node.id
            if request.get("restart") is None:
                request["restart"] = "permanent"  # OTP's default for supervised children

    def on_new_record(self, record: ActorRecord) -> None:
        """A spawn was accepted: a supervised actor becomes its supervisor's youngest child."""
        node = self.nodes.get(record.supervisor)
        if node is not None:
            node.children.append(record.id)

    # ------------------------------------------------------------------ decisions
    def decide_restart(self, record: ActorRecord) -> bool:
        """Whether the incarnation that just died gets a successor (called before the death is announced)."""
        node = self.nodes.get(record.supervisor) if record.supervisor else None
        if record.wanted_down or record.doomed:
            record.planned = False
            return False
        if record.planned:  # its supervisor stopped it to restart it with its group
            record.planned = False
            return True
        if record.ready_mono is None:  # the spawn itself failed: not a child, nothing to restart
            if node is not None and record.id in node.children:
                node.children.remove(record.id)
            return False
        if not needs_restart(record.restart, record.abnormal_exit):
            if node is not None and record.restart == "temporary" and record.id in node.children:
                node.children.remove(record.id)
            return False
        self._deciding = record
        try:
            if node is None:
                return self._standalone_failed(record)
            return self._child_failed(node, record.id)
        finally:
            self._deciding = None

    def _standalone_failed(self, record: ActorRecord) -> bool:
        if len(self.standalone) > 1000:  # histories of actors gone for good
            for key in [k for k in self.standalone if getattr(self.table.by_id.get(k), "state", EXITED) == EXITED]:
                del self.standalone[key]
        history = self.standalone.get(record.id)
        if history is None:
            limits = {**self.defaults, **record.limits}
            history = self.standalone[record.id] = RestartHistory.of(limits, self.clock)
        if not history.allow():
            why = f"gave up: more than {history.intensity} restarts in {history.period:g} s"
            self._gave_up(record.exit, why, actor=record)
            return False
        self._schedule(Work(None, record.id, [], [record], [], history.delay()))
        return True

    def _child_failed(self, node: SupervisorNode, child_id: str) -> bool:
        """A child of ``node`` (actor, or escalating supervisor) needs a restart: apply the strategy."""
        if node.state in ("failed", "stopping"):
            return False
        if not node.history.allow():
            return self._escalate(node, f"more than {node.history.intensity} restarts in {node.history.period:g} s")
        children = node.children
        index = children.index(child_id) if child_id in children else len(children)
        if node.strategy == "one_for_all":
            group = list(children)
        elif node.strategy == "rest_for_one":
            group = children[index:]
        else:
            group = [child_id]
        actors = self._actors_of(group)
        deciding = self._deciding
        to_stop = [r for r in actors if r is not deciding and r.state not in (EXITED, RESTARTING)]
        for record in to_stop:
            record.planned = True
        to_start = [r for r in actors if r is deciding or r.state != EXITED]
        resets = [self.nodes[c] for c in group if c in self.nodes]
        for sub in resets:
            for desc in self._nodes_under(sub):
                desc.state = "restarting"
        node.restarts += 1
        self._schedule(Work(node, child_id, list(reversed(to_stop)), to_start, resets, node.history.delay()))
        return True

    def _escalate(self, node: SupervisorNode, why: str) -> bool:
        """``node`` exceeded its intensity: its parent restarts it (and its subtree), or it gives up."""
        node.reason = why
        log.warning("supervisor %s: %s; escalating", node.label, why)
        parent = node.parent
        node.state = "failed"
        if parent is not None and node.restart != "temporary":
            if self._child_failed(parent, node.id):
                node.state = "restarting"
                return True
            if parent.state in ("failed", "stopping"):
                return False  # an ancestor gave up (or is stopping): it stops this subtree too
        # Nobody restarts this subtree: stop what still runs, in reverse start order.
        deciding = self._deciding
        doomed = [r for r in self._actors_of([node.id]) if r is not deciding and r.state != EXITED]
        reason = f"supervisor {node.label!r} gave up: {why}"
        for record in doomed:
            record.doomed = reason
            record.planned = False
        for desc in self._nodes_under(node):
            desc.state = "failed"
        if deciding is not None:
            self._gave_up(deciding.exit, reason, node=node)
        else:
            self._gave_up(None, reason, node=node)
        self._schedule(Work(node, node.id, list(reversed(doomed)), [], [], 0.0))
        return False

    def _gave_up(
        self, exit_info: dict | None, why: str, *, actor: ActorRecord | None = None, node: SupervisorNode | None = None
    ) -> None:
        self.gave_up += 1
        if exit_info is not None:
            exit_info["reason"] = f"{exit_info.get('reason', '')}; {why}".lstrip("; ")
        body: dict[str, Any] = {"reason": why}
        if actor is not None:
            body.update(actor=actor.id, name=actor.name)
            log.warning("actor %s: %s", actor.label, why)
        if node is not None:
            body.update(supervisor=node.id, supervisor_name=node.name)
        self.publish("sys.supervisor.gave_up", body)

    def on_actor_exit(self, record: ActorRecord) -> None:
        """Exit hook: drop a standalone actor's history once it is gone for good."""
        if record.state == EXITED:
            self.standalone.pop(record.id, None)
