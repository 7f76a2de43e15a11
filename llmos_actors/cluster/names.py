"""Actor names unique per cluster: a spawn claims its name at the registry before any node starts it.

Each node's daemon keeps names unique on that node; two spawns of one name on two nodes would
both succeed there. So a spawn through the cluster kernel first claims the name here (one
table, behind one lock in the registry actor), then spawns, then confirms the claim with the
actor's id, or releases it if the spawn failed. A claim is not kept in step with every exit:
when a later spawn wants a held name, the holder's node is asked whether the actor still runs,
and a name whose actor is gone (or whose node was lost) is free again.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import NameTaken

#: Seconds a claim may stay unconfirmed before its holder is asked (its driver may have died mid-spawn).
PENDING_TIMEOUT = 120.0


@dataclass
class Claim:
    node_id: str
    token: str
    actor_id: str = ""  # empty while the spawn runs
    since: float = 0.0


class NameClaims:
    """The cluster's name table. ``running(node_id, name)`` is the id of the actor of that name
    running on that node, or ``""`` (it is called without the lock held: it asks the node's daemon)."""

    def __init__(self, running: Callable[[str, str], str]) -> None:
        self.running = running
        self.claims: dict[str, Claim] = {}
        self._lock = threading.Lock()

    def claim(self, name: str, node_id: str) -> str:
        """Hold ``name`` for a spawn on ``node_id``; returns the token that confirms or releases it.

        Raises:
            NameTaken: an actor of that name runs (or is being spawned) on some node; the
                message is the one a single daemon gives for a taken name.
        """
        while True:
            with self._lock:
                held = self.claims.get(name)
                if held is None:
                    token = secrets.token_hex(8)
                    self.claims[name] = Claim(node_id, token, since=time.monotonic())
                    return token
                if not held.actor_id and time.monotonic() - held.since < PENDING_TIMEOUT:
                    raise NameTaken(
                        f"an actor named {name!r} is already running (being spawned on node {held.node_id[:12]})"
                    )
            running = self.running(held.node_id, name)  # the holder's node: does it still run?
            if running:
                raise NameTaken(f"an actor named {name!r} is already running (id {running})")
            with self._lock:  # gone: free the name unless someone else changed it meanwhile
                if self.claims.get(name) is held:
                    del self.claims[name]

    def confirm(self, name: str, token: str, actor_id: str) -> None:
        with self._lock:
            held = self.claims.get(name)
            if held is not None and held.token == token:
                held.actor_id = actor_id

    def release(self, name: str, token: str) -> None:
        """The spawn failed: the name is free again (a stale token changes nothing)."""
        with self._lock:
            held = self.claims.get(name)
            if held is not None and held.token == token:
                del self.claims[name]

    def hold(self, name: str, node_id: str, actor_id: str) -> None:
        """Record a name already running (the table rebuilt from the daemons after a registry restart)."""
        with self._lock:
            self.claims.setdefault(name, Claim(node_id, secrets.token_hex(8), actor_id, time.monotonic()))

    def node_lost(self, node_id: str) -> None:
        """The node's actors are gone: their names are free (a respawned permanent actor claims its own again)."""
        with self._lock:
            for name in [n for n, c in self.claims.items() if c.node_id == node_id]:
                del self.claims[name]

    def table(self) -> dict[str, dict]:
        with self._lock:
            return {n: {"node": c.node_id, "actor": c.actor_id} for n, c in self.claims.items()}
