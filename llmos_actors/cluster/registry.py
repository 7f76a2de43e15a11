"""The cluster registry: one named, detached Ray actor that owns the keys and a daemon per alive node.

It makes the cluster keys once, starts a pinned ``NodeAgent`` on every alive Ray node (and on
nodes that join later), and records each daemon's endpoint and state for drivers. A node Ray
reports dead is marked ``lost``; drivers watching the registry fail its actors' refs, and the
registry's supervisor spawns the node's permanent actors again on other nodes that fit (the
driver that spawned them may be gone: the registry lives as long as the llmos cluster).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from ..errors import NameTaken
from . import state
from .agent import NodeAgent, agent_options
from .keys import ClusterKeys
from .names import NameClaims
from .nodes import KEYDIR_PREFIX, NodeKernels

log = logging.getLogger(__name__)

#: The registry's Ray actor name and namespace.
REGISTRY_NAME = "llmos-registry"
NAMESPACE = "llmos"
#: Seconds between looks at Ray's node table.
RECONCILE_PERIOD = 0.5
#: Seconds the supervisor keeps trying to respawn a lost node's permanent actor (no node fits yet...).
RESPAWN_TIMEOUT = 120.0


def alive_nodes() -> dict[str, dict]:
    """``{node id: Ray's node record}`` of the nodes Ray counts alive."""
    import ray

    return {n["NodeID"]: n for n in ray.nodes() if n.get("Alive")}


class Registry:
    """State of the llmos cluster (called through Ray; a thread keeps it in step with Ray's nodes)."""

    def __init__(self, settings: dict | None = None) -> None:
        saved_keys = state.load(state.KEYS)  # an earlier incarnation's (Ray restarted this actor)
        self.keys = ClusterKeys(**saved_keys) if saved_keys else ClusterKeys.generate()
        if not saved_keys:
            state.save(state.KEYS, dataclasses.asdict(self.keys))
        self.settings = dict(settings or {})
        self.agents: dict[str, Any] = {}  # node id -> agent handle
        self.starting: dict[str, Any] = {}  # node id -> ObjectRef of agent.start()
        self.nodes: dict[str, dict] = {}  # node id -> {"state", "endpoint", ...}
        self._peers: dict[str, str] = {}  # the up daemons' endpoints, as last told to the agents
        stale = state.load(state.KEYDIR)
        if isinstance(stale, str) and Path(stale).name.startswith(KEYDIR_PREFIX):
            shutil.rmtree(stale, ignore_errors=True)
        saved = state.load(state.SUPERVISED) or {}
        #: actor id -> spawn spec {"node", "cls", "args", "kwargs", "options"} (persisted: ``state``)
        self.permanent: dict[str, dict] = dict(saved.get("permanent") or {})
        self.respawned = int(saved.get("respawned") or 0)
        self._kernels: NodeKernels | None = None  # the supervisor's handles on the daemons (opened on first need)
        self.names = NameClaims(lambda node_id, name: self._node_kernels().running(node_id, name))
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="llmos-registry", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ for drivers
    def client_keys(self) -> ClusterKeys:
        return self.keys.client_only()

    def node_table(self) -> list[dict]:
        with self._lock:
            return [dict(v) for v in self.nodes.values()]

    def wait_ready(self, timeout: float) -> list[dict]:
        """Block until every alive node's daemon is up (or ``timeout``); returns the node table."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            alive = set(alive_nodes())
            with self._lock:
                up = {n for n, v in self.nodes.items() if v["state"] == "up"}
            if alive and alive <= up:
                break
            self._stop.wait(0.1)
        return self.node_table()

    def shutdown(self) -> int:
        """Stop every daemon (the caller kills this actor afterwards); returns how many were stopped."""
        import ray

        self._stop.set()
        self._thread.join(5)
        state.clear()
        with self._lock:
            agents = dict(self.agents)
            self.agents.clear()
        if self._kernels is not None:
            self._kernels.close()
        stops = [a.stop.remote() for a in agents.values()]
        ray.wait(stops, num_returns=len(stops), timeout=40)
        for agent in agents.values():
            ray.kill(agent)
        return len(agents)

    def agent(self, node_id: str) -> Any:
        return self.agents[node_id]

    def pid(self) -> int:
        """This incarnation's process (a restart by Ray makes a new one)."""
        return os.getpid()

    # ------------------------------------------------------------------ names unique per cluster
    def claim_name(self, name: str, node_id: str) -> dict:
        """``{"token": ...}``, or ``{"taken": message}`` (the driver raises ``NameTaken`` with it)."""
        try:
            return {"token": self.names.claim(name, node_id)}
        except NameTaken as exc:
            return {"taken": str(exc)}

    def confirm_name(self, name: str, token: str, actor_id: str) -> None:
        self.names.confirm(name, token, actor_id)

    def release_name(self, name: str, token: str) -> None:
        self.names.release(name, token)

    def _node_kernels(self) -> NodeKernels:
        with self._lock:
            if self._kernels is None:
                self._kernels = NodeKernels(self.keys, self.node_table, self.names)
                state.save(state.KEYDIR, str(self._kernels.keydir))
            return self._kernels

    # ------------------------------------------------------------------ the cluster supervisor
    def supervise(self, actor_id: str, spec: dict) -> None:
        """Respawn this permanent actor elsewhere if its node is lost (``spec``: how it was spawned)."""
        with self._lock:
            self.permanent[actor_id] = dict(spec)
        self._persist()

    def unsupervise(self, actor_id: str) -> None:
        with self._lock:
            if self.permanent.pop(actor_id, None) is None:
                return
        self._persist()

    def _persist(self) -> None:
        with self._lock:
            permanent, respawned = dict(self.permanent), self.respawned
        state.save_supervised(permanent, respawned)

    def supervised(self) -> dict:
        """``{"actors": {actor id: node id}, "respawned": count}``."""
        with self._lock:
            return {"actors": {aid: spec["node"] for aid, spec in self.permanent.items()}, "respawned": self.respawned}

    def _node_lost(self, node_id: str) -> None:
        self.names.node_lost(node_id)
        with self._lock:
            again = {aid: spec for aid, spec in self.permanent.items() if spec["node"] == node_id}
            for aid in again:
                del self.permanent[aid]
        if again:
            self._persist()
            threading.Thread(target=self._respawn, args=(node_id, again), name="llmos-respawn", daemon=True).start()

    def _respawn(self, node_id: str, specs: dict[str, dict]) -> None:
        kernels = self._node_kernels()
        kernels.forget(node_id)
        for aid, spec in specs.items():
            deadline = time.monotonic() + RESPAWN_TIMEOUT
            while not self._stop.is_set():
                try:
                    new_node, ref = kernels.spawn(spec["cls"], spec["args"], spec["kwargs"], "auto", spec["options"])
                except Exception as exc:  # no node fits yet, or a daemon is restarting: try again
                    if time.monotonic() > deadline:
                        log.error(
                            "llmos supervisor: permanent actor %s of lost node %s not respawned: %s", aid, node_id, exc
                        )
                        break
                    self._stop.wait(1.0)
                    continue
                log.warning(
                    "llmos supervisor: permanent actor %s of lost node %s is %s on %s", aid, node_id, ref.id, new_node
                )
                with self._lock:
                    self.permanent[ref.id] = dict(spec, node=new_node)
                    self.respawned += 1
                self._persist()
                break

    # ------------------------------------------------------------------ keeping in step with Ray
    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._reconcile()
            except Exception:
                log.exception("llmos registry: reconcile failed")
            self._stop.wait(RECONCILE_PERIOD)

    def _reconcile(self) -> None:
        import ray

        alive = alive_nodes()
        remote_agent = ray.remote(NodeAgent)
        for node_id, record in alive.items():
            if node_id in self.agents:
                continue
            # By name: a restarted registry finds the running agents (and their daemons) again.
            options = agent_options(node_id, NAMESPACE)
            agent: Any = remote_agent.options(**options).remote(self.keys, node_id, self.settings)
            with self._lock:
                self.agents[node_id] = agent
                self.starting[node_id] = agent.start.remote()
                self.nodes[node_id] = {
                    "node_id": node_id,
                    "state": "starting",
                    "address": record.get("NodeManagerAddress", ""),
                    "resources": dict(record.get("Resources") or {}),
                    "labels": dict(record.get("Labels") or {}),
                }
        if self.starting:
            done, _ = ray.wait(list(self.starting.values()), num_returns=len(self.starting), timeout=0)
            for node_id, ref in list(self.starting.items()):
                if ref in done:
                    del self.starting[node_id]
                    try:
                        info = ray.get(ref)
                    except Exception as exc:
                        log.warning("llmos daemon on node %s failed to start: %s", node_id, exc)
                        with self._lock:
                            self.nodes[node_id]["state"] = "failed"
                            self.agents.pop(node_id, None)
                        continue
                    with self._lock:
                        self.nodes[node_id].update(info, state="up")
                    self._adopt_names(node_id)
        self._refresh([n for n in self.agents if n in alive and n not in self.starting])
        for node_id in list(self.agents):
            if node_id not in alive:
                with self._lock:
                    self.agents.pop(node_id, None)
                    self.starting.pop(node_id, None)
                    self.nodes[node_id]["state"] = "lost"
                log.warning("llmos registry: node %s lost", node_id)
                self._node_lost(node_id)
        self._tell_peers()
        with self._lock:  # supervised actors of a node lost while this registry was restarting
            gone = {spec["node"] for spec in self.permanent.values()} - set(alive) - set(self.agents)
        for node_id in gone:
            log.warning("llmos registry: node %s of supervised actors is gone", node_id)
            self._node_lost(node_id)

    def _adopt_names(self, node_id: str) -> None:
        """The names running on a node whose daemon this registry has just found (it ran before a restart)."""
        try:
            rows = self._node_kernels().kernel(node_id).ps(exited=False)
        except Exception as exc:  # its daemon restarting: its actors are gone with it
            log.warning("llmos registry: names on node %s not read: %s", node_id, exc)
            return
        for row in rows:
            if row.get("name"):
                self.names.hold(row["name"], node_id, row["id"])

    def _tell_peers(self) -> None:
        """Every up agent learns the up daemons' endpoints when they change (for topics across nodes)."""
        with self._lock:
            peers = {n: v["endpoint"] for n, v in self.nodes.items() if v["state"] == "up" and n in self.agents}
            agents = [self.agents[n] for n in peers]
        if peers != self._peers:
            self._peers = peers
            for agent in agents:
                agent.set_peers.remote(peers)

    def _refresh(self, node_ids: list[str]) -> None:
        """Each up daemon's current pid (a restarted daemon is a new one: drivers reconnect)."""
        import ray

        refs = {n: self.agents[n].info.remote() for n in node_ids}
        ready, _ = ray.wait(list(refs.values()), num_returns=len(refs), timeout=2.0)
        for node_id, ref in refs.items():
            if ref in ready:
                info = ray.get(ref)
                with self._lock:
                    self.nodes[node_id].update(info, state="up" if info["pid"] else "restarting")


def registry_options() -> dict[str, Any]:
    return {
        "name": REGISTRY_NAME,
        "namespace": NAMESPACE,
        "lifetime": "detached",
        "num_cpus": 0,
        "max_concurrency": 8,
        "get_if_exists": True,
        "max_restarts": -1,  # Ray starts it again if its process dies; ``state`` holds what it must keep
    }
