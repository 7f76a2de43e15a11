"""Choosing a node for a spawn: a node id, ``"auto"`` (least loaded that fits) or a label."""

from __future__ import annotations

from typing import Any

from ..errors import ResourceUnavailable


def _wants(options: dict) -> tuple[float, float]:
    cpus, gpus = options.get("cpus"), options.get("gpus")
    ncpu = len(cpus) if isinstance(cpus, (list, tuple)) else (cpus if isinstance(cpus, int) else 0)
    ngpu = len(gpus) if isinstance(gpus, (list, tuple)) else (gpus if isinstance(gpus, int) else 0)
    return float(ncpu), float(ngpu)


def choose_node(node: Any, nodes: list[dict], load: dict[str, int], options: dict) -> str:
    """The node id a spawn goes to.

    Args:
        node: a node id (or its unique prefix), ``"auto"``, or ``"key=value"`` / ``"value"`` matching a Ray label.
        nodes: the registry's node table (only ``up`` nodes are candidates).
        load: actors running per node id (the least loaded fitting node wins ``"auto"``).
        options: the spawn options (``cpus`` and ``gpus`` must fit the node's Ray resources).

    Raises:
        ResourceUnavailable: no up node matches or fits.
    """
    up = [n for n in nodes if n["state"] == "up"]
    ncpu, ngpu = _wants(options)
    fits = [n for n in up if n["resources"].get("CPU", 0) >= ncpu and n["resources"].get("GPU", 0) >= ngpu]
    if node in (None, "auto"):
        if not fits:
            raise ResourceUnavailable(f"no llmos node has {ncpu:g} cores and {ngpu:g} GPUs free of {len(up)} up")
        return min(fits, key=lambda n: (load.get(n["node_id"], 0), n["node_id"]))["node_id"]
    if not isinstance(node, str) or not node:
        raise ValueError(f"node must be a node id, 'auto' or a label, not {node!r}")
    by_id = [n for n in up if n["node_id"].startswith(node)]
    if len(by_id) == 1:
        return by_id[0]["node_id"]
    key, _, value = node.rpartition("=")
    labelled = [n for n in fits if any((k == key or not key) and v == value for k, v in n.get("labels", {}).items())]
    if not labelled:
        raise ResourceUnavailable(f"no up llmos node is {node!r} (a node id, or a label) with the resources asked")
    return min(labelled, key=lambda n: (load.get(n["node_id"], 0), n["node_id"]))["node_id"]
