"""The daemon's control socket: the requests clients and actors may make, by name.

Every handler gets the request first (to know who asks, for notices), then the
request's own arguments. Handlers validate their input; anything unexpected
becomes a clear error reply and leaves the daemon's state as it was.
"""

from __future__ import annotations

import os
import time
from typing import Any

from .._rpc.invoke import Invoker
from .._rpc.server import Request, RpcServer
from .._version import __version__
from .._wire import protocol as P
from ..errors import ActorNotFound, ProtocolError
from .proctable import EXITED, RESTARTING, ActorRecord

#: Methods clients may call on the daemon. Anything else is MethodNotFound.
PUBLIC_METHODS = frozenset(
    {
        "hello",
        "goodbye",
        "spawn",
        "lookup",
        "kill",
        "ps",
        "status",
        "watch",
        "logs",
        "actor_ready",
        "actor_failed",
        "actor_stopping",
        "heartbeat",
    }
)


def _str_arg(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ProtocolError(f"{what} must be a non-empty string")
    return value


class ControlService:
    """Maps control requests onto the daemon's parts (see ``Daemon``)."""

    def __init__(self, daemon: Any, server: RpcServer) -> None:
        self.daemon = daemon
        self.server = server
        self.started = time.time()
        self.handlers: dict[str, Any] = {name: getattr(self, name) for name in PUBLIC_METHODS}
        self.invoker = Invoker(server, self.handlers.get, pass_request=True, label="the daemon")
        server.on_request = self.invoker

    def add(self, name: str, handler: Any) -> None:
        """Expose another subsystem's handler (``handler(request, *args)``) on the control socket."""
        if name in self.handlers:
            raise ValueError(f"control method {name!r} is already served")
        self.handlers[name] = handler

    # ------------------------------------------------------------------ notices
    def notify_watchers(self, record: ActorRecord, notice: dict) -> None:
        for ident in list(record.watchers):
            self.server.notify(ident, notice)

    # ------------------------------------------------------------------ handlers
    def hello(self, req: Request, info: Any = None) -> dict:
        d = self.daemon
        return {
            "version": __version__,
            "protocol": P.VERSION,
            "pid": os.getpid(),
            "instance": d.config.instance,
            "runtime_dir": str(d.config.runtime_dir),
        }

    def goodbye(self, req: Request) -> None:
        """A client handle is closing: release what it holds (sync objects), drop its monitors."""
        self.daemon.client_gone(req.ident)

    async def spawn(self, req: Request, request: Any) -> dict:
        if not isinstance(request, dict):
            raise ProtocolError("spawn takes one map describing the actor")
        record = await self.daemon.spawn(request)
        return self._address_reply(record)

    @staticmethod
    def _address_reply(record: ActorRecord) -> dict:
        return {**record.address(), "pid": record.pid, "cpus": record.cpus, "nice": record.nice}

    def lookup(self, req: Request, name: Any) -> dict:
        record = self.daemon.table.find(_str_arg(name, "name"))
        return self._address_reply(record)

    async def kill(self, req: Request, target: Any, force: bool = False, grace: Any = None, drain: bool = True) -> dict:
        record = self.daemon.table.find(_str_arg(target, "actor name"))
        if grace is not None and (not isinstance(grace, (int, float)) or grace < 0):
            raise ProtocolError("grace must be a number of seconds >= 0")
        return await self.daemon.kill(record, force=bool(force), grace=grace, drain=bool(drain))

    def ps(self, req: Request, exited: bool = True) -> list[dict]:
        rows = [r.to_dict() for r in self.daemon.table.all() if exited or r.state != EXITED]
        self.daemon.add_usage(rows)
        return rows

    def status(self, req: Request) -> dict:
        return self.daemon.status()

    def watch(self, req: Request, actor_id: Any) -> None:
        actor_id = _str_arg(actor_id, "actor id")
        record = self.daemon.table.by_id.get(actor_id)
        if record is None:
            self.server.notify(req.ident, {"event": "unknown", "actor": actor_id})
        elif record.state == EXITED:
            self.server.notify(req.ident, record.exit_notice())
        else:
            if record.state == RESTARTING:  # down now; the watcher hears "restarted" later
                self.server.notify(req.ident, record.exit_notice())
            record.watchers.add(req.ident)

    def logs(self, req: Request, target: Any, lines: int = 100, offset: Any = None) -> dict:
        target = _str_arg(target, "actor name")
        try:
            label = self.daemon.table.find(target).label
        except ActorNotFound:
            label = target  # logs outlive the process table
        if not isinstance(lines, int) or lines < 0:
            raise ProtocolError("lines must be an int >= 0")
        if offset is not None and not isinstance(offset, int):
            raise ProtocolError("offset must be an int")
        return self.daemon.logs.read(label, lines=lines, offset=offset)

    # -- from actors -------------------------------------------------------------------
    def actor_ready(self, req: Request, actor_id: Any, info: Any = None) -> None:
        actor_id = _str_arg(actor_id, "actor id")
        record = self.daemon.table.by_id.get(actor_id)
        if record is not None:
            record.control_ident = req.ident  # where notices for the actor itself go (linked exits)
        self.daemon.lifecycle.ready(actor_id, info or {})

    def actor_stopping(self, req: Request, actor_id: Any) -> dict:
        """An actor got SIGTERM: how to treat its calls in flight (drain or cancel) and for how long."""
        record = self.daemon.table.by_id.get(_str_arg(actor_id, "actor id"))
        mode = dict(record.stop_mode) if record is not None else {}
        mode.setdefault("drain", True)
        mode.setdefault("grace", self.daemon.config.grace)
        return mode

    def actor_failed(self, req: Request, actor_id: Any, payload: Any = None) -> None:
        self.daemon.lifecycle.failed(_str_arg(actor_id, "actor id"), payload or {})

    def heartbeat(self, req: Request, actor_id: Any, stats: Any = None) -> None:
        self.daemon.lifecycle.heartbeat(_str_arg(actor_id, "actor id"), stats or {})
