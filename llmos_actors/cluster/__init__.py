"""llmos on a Ray cluster: a daemon per node, one handle over all of them (see docs/cluster.md).

``up()`` / ``down()`` start and stop the node daemons; ``connect("ray://auto")`` (also reachable
as ``llmos.connect("ray://auto")``) returns a ``ClusterKernel``, ``connect_async`` (and
``llmos.connect_async("ray://auto")``) an ``AsyncClusterKernel``. Needs Ray (``pip install ray``).
"""

from __future__ import annotations

from ..client import ASYNC_URL_SCHEMES, URL_SCHEMES
from .async_kernel import AsyncClusterKernel
from .control import down, up
from .kernel import ClusterKernel


def connect(address: str = "ray://auto") -> ClusterKernel:
    """A ``ClusterKernel`` on the llmos cluster of the Ray cluster at ``ray://auto`` or ``ray://host:port``."""
    return ClusterKernel(address.removeprefix("ray://") or "auto")


def connect_async(address: str = "ray://auto") -> AsyncClusterKernel:
    """The asyncio flavour: ``async with connect_async("ray://auto") as k`` (or ``k = await ...``)."""
    return AsyncClusterKernel(address.removeprefix("ray://") or "auto")


URL_SCHEMES["ray"] = connect
ASYNC_URL_SCHEMES["ray"] = connect_async

__all__ = ["AsyncClusterKernel", "ClusterKernel", "connect", "connect_async", "down", "up"]
