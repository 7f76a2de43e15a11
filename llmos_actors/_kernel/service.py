"""What a daemon subsystem looks like to the daemon, and how actor events reach it.

The daemon is a composition: ``Daemon.services`` lists the subsystems (event bus,
pages, supervisor, sync objects, scheduler, ...), each in its own module and
built from explicit constructor arguments. A subsystem that cares about actors'
lives overrides the ``on_*`` hooks below; the lifecycle tells ``Services``, which
tells every subsystem, so adding one is a new module plus one line in
``Daemon._build_services``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

log = logging.getLogger(__name__)

S = TypeVar("S", bound="Service")


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

    # ------------------------------------------------------------------ actor events
    def check_spawn(self, request: dict) -> None:
        """A spawn request, before anything is recorded or forked: raise to refuse it (it may fill
        in defaults)."""

    def on_new_record(self, record: Any) -> None:
        """A new actor record, before its first incarnation forks (it may still be refused here)."""

    def decide_restart(self, record: Any) -> bool | None:
        """Whether another incarnation follows this death; None: not this subsystem's call."""
        return None

    def on_actor_notice(self, record: Any, notice: dict) -> None:
        """A death or restart notice is going out (after it is decided, before the exit hooks)."""

    def on_actor_exit(self, record: Any) -> None:
        """An incarnation's exit is recorded and announced."""

    def client_gone(self, ident: bytes) -> None:
        """A client handle closed (it said goodbye): drop what it left behind."""


class Services:
    """The daemon's subsystems in start order, and the fan-out of actor events to them.

    The lifecycle holds this (not the subsystems), so subsystems built after it
    still hear every event, and nothing is wired by assigning attributes.
    """

    def __init__(self) -> None:
        self.items: list[Service] = []

    def add(self, service: S) -> S:
        self.items.append(service)
        return service

    def __iter__(self) -> Iterator[Service]:
        return iter(self.items)

    def __reversed__(self) -> Iterator[Service]:
        return reversed(self.items)

    def check_spawn(self, request: dict) -> None:
        for service in self.items:
            service.check_spawn(request)

    def record_created(self, record: Any) -> None:
        for service in self.items:
            service.on_new_record(record)

    def decide_restart(self, record: Any) -> bool:
        for service in self.items:
            decision = service.decide_restart(record)
            if decision is not None:
                return decision
        return False

    def actor_notice(self, record: Any, notice: dict) -> None:
        for service in self.items:
            service.on_actor_notice(record, notice)

    def actor_exited(self, record: Any) -> None:
        for service in self.items:
            try:
                service.on_actor_exit(record)
            except Exception:  # one subsystem's bug must not cost the others the exit
                log.exception("%s: exit hook failed for %s", service.name, getattr(record, "label", record))

    def client_gone(self, ident: bytes) -> None:
        for service in self.items:
            service.client_gone(ident)
