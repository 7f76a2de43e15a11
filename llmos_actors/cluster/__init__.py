"""llmos on a Ray cluster: a daemon per node, one handle over all of them (see docs/cluster.md).

``up()`` / ``down()`` start and stop the node daemons; ``connect("ray://auto")`` (also reachable
as ``llmos.connect("ray://auto")``) returns a ``ClusterKernel``. Needs Ray (``pip install ray``).
"""

from __future__ import annotations

from ..client import URL_SCHEMES
from .control import down, up
from .kernel import ClusterKernel


def connect(address: str = "ray://auto") -> ClusterKernel:
    """A ``ClusterKernel`` on the llmos cluster of the Ray cluster at ``ray://auto`` or ``ray://host:port``."""
    return ClusterKernel(address.removeprefix("ray://") or "auto")


URL_SCHEMES["ray"] = connect

__all__ = ["ClusterKernel", "connect", "down", "up"]
