"""The daemon's control socket: the requests clients and actors may make, by name.

Every handler gets the request first (to know who asks, for notices), then the
request's own arguments. Handlers validate their input; anything unexpected
becomes a clear error reply and leaves the daemon's state as it was.
"""

from __future__ import annotations

import hmac
import os
import time
from typing import Any

from .._rpc.invoke import Invoker
from .._rpc.server import Request, RpcServer
from .._version import __version__
from .._wire import protocol as P
from ..errors import ActorNotFound, LimitExceeded, PermissionDenied, ProtocolError
from .auth import DAEMON, Gate, Identity
from .proctable import EXITED, RESTARTING, ActorRecord

#: Methods clients may call on the daemon. Anything else is MethodNotFound.
PUBLIC_METHODS = frozenset(
    {
        "hello",
        "goodbye",
        "spawn",
        "lookup",
        "kill",
        "grant",
        "ps",
        "status",
        "watch",
        "logs",
        "actor_ready",
        "actor_failed",
        "actor_stopping",
        "heartbeat",
        "audit",
    }
)


#: Identities one actor may be granted to (each is kept in its record and journal).
MAX_GRANTS = 256


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
        self.invoker = AuditedInvoker(server, self.handlers.get, pass_request=True, label="the daemon")
        self.invoker.audit = daemon.audit
        # Every request passes the gate first: who sent it (from the transport), and may they?
        server.on_request = Gate(daemon.policy, server, daemon.audit, self.invoker)

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
        who = identity_of(req)
        d = self.daemon
        try:
            d.policy.check_spawn(who, str(request.get("cls")))
            d.quotas.check_actors(who, d.table)
        except (PermissionDenied, LimitExceeded) as exc:
            d.audit.refused("spawn", who, str(exc), cls=str(request.get("cls"))[:200])
            raise
        record = await d.spawn(request, owner=who.name)
        d.audit.record("spawn", who, actor=record.id, name=record.name, cls=record.cls, pid=record.pid)
        return self._address_reply(record, who)

    @staticmethod
    def _address_reply(record: ActorRecord, who: Identity | None = None) -> dict:
        address = record.address()
        if who is not None and who.remote:  # a remote client reaches the actor over TCP (CurveZMQ)
            address["endpoint"] = record.tcp_endpoint
        return {**address, "pid": record.pid, "cpus": record.cpus, "nice": record.nice}

    def lookup(self, req: Request, name: Any) -> dict:
        record = self.daemon.table.find(_str_arg(name, "name"))
        who = identity_of(req)
        grants = record.request.get("grants") or ()
        if who.role == "user" and not self.daemon.policy.may_call(who, record.owner, grants):
            message = (
                f"{who.name} may not call actor {record.label!r}: it belongs to {record.owner} "
                "(its owner may kernel.grant it)"
            )
            self.daemon.audit.refused("lookup", who, message, actor=record.id)
            raise PermissionDenied(message)
        return self._address_reply(record, who)

    def callers(self, record: ActorRecord) -> list[str]:
        """Who the actor's own TCP endpoint accepts (its ZAP handler checks each connection).

        On a node of a cluster, that includes the other nodes' processes (their actors call with
        the cluster's node key), as actors of one daemon call each other.
        """
        keys = self.daemon.policy.callers(record.owner, record.request.get("grants") or ())
        nodes = self.daemon.relay.node_identity
        return keys if not nodes or "*" in keys else sorted({*keys, nodes})

    def _owner_only(self, req: Request, record: Any, action: str) -> str:
        """The requester's identity, if it may ``action`` this actor (its owner or an admin); else
        the refusal is audited and raised (``PermissionDenied``)."""
        who = identity_of(req)
        try:
            self.daemon.policy.check_owner(who, record.owner, f"actor {record.label!r}")
        except PermissionDenied as exc:
            self.daemon.audit.refused(action, who, str(exc), actor=record.id)
            raise
        return who

    def grant(self, req: Request, target: Any, identity: Any) -> dict:
        """Let ``identity`` (``key:<name>`` or ``uid:<n>``) call an actor; its owner or an admin only."""
        record = self.daemon.table.find(_str_arg(target, "actor name"))
        if not (isinstance(identity, str) and identity.startswith(("key:", "uid:")) and 4 < len(identity) <= 200):
            raise ProtocolError("grant takes an identity 'key:<name>' or 'uid:<number>'")
        who = self._owner_only(req, record, "grant")
        grants = record.request.setdefault("grants", [])
        if identity not in grants:
            if len(grants) >= MAX_GRANTS:
                raise LimitExceeded(f"actor {record.label!r} has {MAX_GRANTS} grants: the most it may have")
            grants.append(identity)
        self.daemon.audit.record("grant", who, actor=record.id, name=record.name, to=identity)
        if record.control_ident is not None and record.live:
            self.server.notify(record.control_ident, {"event": "callers", "callers": self.callers(record)})
        return {"grants": list(grants)}

    async def kill(self, req: Request, target: Any, force: bool = False, grace: Any = None, drain: bool = True) -> dict:
        record = self.daemon.table.find(_str_arg(target, "actor name"))
        if grace is not None and (type(grace) not in (int, float) or not 0 <= grace <= 3600):
            raise ProtocolError("grace must be a number of seconds from 0 to 3600")
        who = self._owner_only(req, record, "kill")
        self.daemon.audit.record("kill", who, actor=record.id, name=record.name, force=bool(force))
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

    def audit(self, req: Request, event: Any) -> None:
        """An actor or agent reports an audit event; the daemon attaches who sent it."""
        self.daemon.audit.client_event(identity_of(req), event)

    # -- from actors (only the actor's own process: its incarnation's token, and its pid) --------
    def _own_record(self, req: Request, method: str, actor_id: Any, token: Any) -> ActorRecord | None:
        """The record of the actor that sent ``req``; None if unknown (a late message after its exit).

        Raises:
            PermissionDenied: the sender is not that actor's current process.
        """
        actor_id = _str_arg(actor_id, "actor id")
        record = self.daemon.table.by_id.get(actor_id)
        if record is None:
            return None
        who = identity_of(req)
        ok = (
            isinstance(token, str)
            and bool(record.token)
            and hmac.compare_digest(token.encode(), record.token.encode())
            and not who.remote
            and (record.pid is None or who.pid is None or who.pid == record.pid)
        )
        if not ok:
            exc = PermissionDenied(f"{method} for actor {actor_id} must come from that actor's own process")
            self.daemon.audit.refused(method, who, str(exc), actor=actor_id)
            raise exc
        return record

    def actor_ready(self, req: Request, actor_id: Any, info: Any = None, token: Any = None) -> None:
        record = self._own_record(req, "actor_ready", actor_id, token)
        if record is None:
            return
        record.control_ident = req.ident  # where notices for the actor itself go (linked exits)
        self.daemon.lifecycle.ready(record.id, info if isinstance(info, dict) else {})

    def actor_stopping(self, req: Request, actor_id: Any, token: Any = None) -> dict:
        """An actor got SIGTERM: how to treat its calls in flight (drain or cancel) and for how long."""
        record = self._own_record(req, "actor_stopping", actor_id, token)
        mode = dict(record.stop_mode) if record is not None else {}
        mode.setdefault("drain", True)
        mode.setdefault("grace", self.daemon.config.grace)
        return mode

    def actor_failed(self, req: Request, actor_id: Any, payload: Any = None, token: Any = None) -> None:
        record = self._own_record(req, "actor_failed", actor_id, token)
        if record is not None:
            self.daemon.lifecycle.failed(record.id, payload if isinstance(payload, dict) else {})

    def heartbeat(self, req: Request, actor_id: Any, stats: Any = None, token: Any = None) -> None:
        record = self._own_record(req, "heartbeat", actor_id, token)
        if record is not None:
            self.daemon.lifecycle.heartbeat(record.id, stats if isinstance(stats, dict) else {})


def identity_of(req: Request) -> Identity:
    """Who sent ``req`` (set by the gate; the daemon itself for requests it makes internally)."""
    return getattr(req, "peer", None) or DAEMON


class AuditedInvoker(Invoker):
    """The daemon's invoker: a request refused as malformed or over a limit is audited too.

    (Permission refusals are audited where they are decided, with what was asked.)
    """

    audit: Any = None

    def fail(self, req: Request, exc: BaseException, *, traceback: bool = True) -> None:
        if self.audit is not None and isinstance(exc, (ProtocolError, LimitExceeded)):
            self.audit.refused(str(req.method)[:100], identity_of(req), str(exc)[:300])
        super().fail(req, exc, traceback=traceback)
