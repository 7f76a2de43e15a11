"""``llmos.cluster.up()`` / ``down()``: start or stop the registry and, through it, every node's daemon."""

from __future__ import annotations

import time
from typing import Any

from ..errors import DaemonUnavailable
from .registry import NAMESPACE, REGISTRY_NAME, Registry, registry_options

#: Seconds ``up`` waits for every alive node's daemon.
UP_TIMEOUT = 120.0
#: Seconds a call to the registry waits out its restart (Ray starts it again if its process dies).
REGISTRY_RESTART_WAIT = 60.0


def ensure_ray(address: str = "auto") -> None:
    """Attach this process to the Ray cluster at ``address`` unless it already is."""
    import ray

    if not ray.is_initialized():
        ray.init(address=address, namespace=NAMESPACE, log_to_driver=False, configure_logging=False)


def registry(address: str = "auto") -> Any:
    """The running registry's handle.

    Raises:
        DaemonUnavailable: no llmos cluster runs on this Ray cluster (run ``llmos cluster up``).
    """
    import ray

    ensure_ray(address)
    try:
        return ray.get_actor(REGISTRY_NAME, namespace=NAMESPACE)
    except ValueError:
        raise DaemonUnavailable("no llmos cluster on this Ray cluster: run `llmos cluster up` first") from None


def ask(handle: Any, method: str, *args: Any) -> Any:
    """Call the registry and wait for the answer, waiting out a restart of the registry.

    Raises:
        DaemonUnavailable: the registry did not come back within ``REGISTRY_RESTART_WAIT`` seconds.
    """
    import ray

    deadline = time.monotonic() + REGISTRY_RESTART_WAIT
    while True:
        try:
            return ray.get(getattr(handle, method).remote(*args))
        except ray.exceptions.ActorUnavailableError as exc:  # restarting: the call may be retried
            if time.monotonic() > deadline:
                raise DaemonUnavailable(f"the llmos registry did not come back: {exc}") from None
            time.sleep(0.1)


def up(address: str = "auto", *, timeout: float = UP_TIMEOUT, **settings: Any) -> list[dict]:
    """Start a daemon on every alive Ray node (idempotent); returns the node table once all are up.

    ``settings`` are daemon config keys given to every node (e.g. ``grace=2.0``).
    """
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    ensure_ray(address)
    # The registry lives on the head node (Ray's own single point: the cluster ends with it anyway),
    # and Ray restarts it there if its process dies.
    head = [n["NodeID"] for n in ray.nodes() if n.get("Alive") and "node:__internal_head__" in n.get("Resources", {})]
    options = registry_options()
    if head:
        options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node_id=head[0], soft=False)
    handle: Any = ray.remote(Registry).options(**options).remote(settings)
    nodes = ray.get(handle.wait_ready.remote(timeout))
    failed = [n for n in nodes if n["state"] not in ("up", "lost")]
    if failed:
        raise DaemonUnavailable(f"llmos daemons not up within {timeout} s on nodes {[n['node_id'] for n in failed]}")
    return nodes


def down(address: str = "auto") -> int:
    """Stop every node's daemon and the registry; returns how many daemons were stopped (0: none ran)."""
    import ray

    try:
        handle = registry(address)
    except DaemonUnavailable:
        return 0
    stopped = ray.get(handle.shutdown.remote())
    ray.kill(handle)
    return stopped
