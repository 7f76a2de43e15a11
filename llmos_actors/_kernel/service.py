"""What a daemon subsystem looks like to the daemon: handlers, start, stop, status.

The daemon is a composition: ``Daemon.services`` lists the subsystems (event bus,
page table, supervisor, sync objects, scheduler, ...), each in its own module.
Adding one is a new module plus one line in ``Daemon._build_services``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Service:
    """Base class of a daemon subsystem.

    Attributes:
        name: the key of its section in ``llmos status``.
    """

    name = "service"

    def handlers(self) -> dict[str, Callable[..., Any]]:
        """Control methods this subsystem serves: ``{name: fn(request, *args, **kwargs)}``."""
        return {}

    async def start(self) -> None:
        """Called once the control socket and fork server are up, in list order."""

    async def stop(self) -> None:
        """Called at shutdown, in reverse order, after every actor has stopped."""

    def status(self) -> dict[str, Any]:
        """This subsystem's counters for ``llmos status`` (empty: not shown)."""
        return {}
