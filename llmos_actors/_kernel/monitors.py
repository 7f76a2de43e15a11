"""Monitors and links: death notices on request, and pairs of actors that die together.

A **monitor** is a watch that surfaces to the user: ``monitor(target, ref)`` asks
the daemon to send the caller a ``down`` notice (exit code or signal, reason,
whether a restart follows) each time ``target`` dies, until it is gone for good
or the caller demonitors. Monitoring an actor that is unknown or already gone
answers at once with a final notice (Erlang's ``noproc``), so a monitor never
waits for a death that already happened.

A **link** joins two live actors: when one dies abnormally (non-zero exit code or
a signal) the other is killed (SIGKILL: it dies abnormally too, so its own
supervisor restarts it by its policy), unless it traps exits (``trap_exits =
True`` on its class): then it gets the notice as a call to ``on_exit(notice)``.
A link lasts until either side dies (like a link to an Erlang pid): a restarted
incarnation is not linked, so two permanent actors cannot kill each other in a
loop; re-link in ``on_start`` if the pair should stay joined.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from typing import Any

from .. import _validate as check
from .._rpc.server import Request, RpcServer
from ..errors import ActorDiedError, ActorNotFound, ProtocolError
from .lifecycle import Lifecycle
from .proctable import EXITED, RESTARTING, ActorRecord, ProcessTable
from .service import Service

log = logging.getLogger(__name__)

#: Monitors one actor may have; more are refused (bounded daemon state).
MAX_MONITORS_PER_ACTOR = 10_000


class Monitors(Service):
    """Who monitors whom, and which actors are linked."""

    name = "monitors"

    def __init__(self, table: ProcessTable, lifecycle: Lifecycle, server: RpcServer) -> None:
        self.table = table
        self.lifecycle = lifecycle
        self.server = server
        self.monitors: dict[str, dict[tuple[bytes, int], None]] = {}
        self.links: dict[str, set[str]] = {}
        self.delivered = 0
        self.link_kills = 0
        self.link_notices = 0

    def handlers(self) -> dict[str, Callable[..., Any]]:
        return {"monitor": self.h_monitor, "demonitor": self.h_demonitor, "link": self.h_link, "unlink": self.h_unlink}

    def status(self) -> dict:
        return {
            "monitors": sum(len(m) for m in self.monitors.values()),
            "links": sum(len(p) for p in self.links.values()) // 2,
            "down_notices": self.delivered,
            "link_kills": self.link_kills,
            "link_exit_notices": self.link_notices,
        }

    # ------------------------------------------------------------------ monitors
    def h_monitor(self, req: Request, target: Any, ref: Any) -> None:
        """Register a monitor (sent one way: the answer is a ``down`` notice, now or later)."""
        target = check.actor_name(target)
        if type(ref) is not int:
            raise ProtocolError("monitor ref must be an int")
        record = self.table.by_name.get(target) or self.table.by_id.get(target)
        if record is None:
            self._send(
                req.ident,
                ref,
                {
                    "event": "exited",
                    "actor": target,
                    "name": target,
                    "pid": None,
                    "exitcode": None,
                    "signal": None,
                    "restarting": False,
                    "reason": "noproc: no such actor",
                },
            )
            return
        if record.state == EXITED:
            self._send(req.ident, ref, record.exit_notice())
            return
        watchers = self.monitors.setdefault(record.id, {})
        if len(watchers) >= MAX_MONITORS_PER_ACTOR:
            raise ProtocolError(f"actor {record.label!r} has {MAX_MONITORS_PER_ACTOR} monitors already")
        watchers[(req.ident, ref)] = None

    def h_demonitor(self, req: Request, target: Any, ref: Any) -> None:
        record = self.table.by_name.get(check.actor_name(target)) or self.table.by_id.get(target)
        if record is not None:
            watchers = self.monitors.get(record.id)
            if watchers is not None:
                watchers.pop((req.ident, ref), None)
                if not watchers:
                    del self.monitors[record.id]

    def _send(self, ident: bytes, ref: int, notice: dict) -> None:
        self.delivered += 1
        self.server.notify(ident, {**notice, "event": "down", "ref": ref})

    def on_actor_notice(self, record: ActorRecord, notice: dict) -> None:
        """Every death notice of ``record`` goes to its monitors; the final one ends them."""
        if notice.get("event") != "exited":
            return
        watchers = self.monitors.get(record.id)
        if not watchers:
            return
        for ident, ref in list(watchers):
            self._send(ident, ref, notice)
        if not notice.get("restarting"):
            del self.monitors[record.id]

    def client_gone(self, ident: bytes) -> None:
        """A client said goodbye: its monitors go with it."""
        for actor_id in list(self.monitors):
            watchers = self.monitors[actor_id]
            for key in [k for k in watchers if k[0] == ident]:
                del watchers[key]
            if not watchers:
                del self.monitors[actor_id]

    # ------------------------------------------------------------------ links
    def _live(self, target: Any) -> ActorRecord:
        record = self.table.find(check.actor_name(target))
        if record.state in (EXITED, RESTARTING):
            raise ActorDiedError(
                f"cannot link: actor {record.label!r} is {record.state}", actor=record.label, reason="noproc"
            )
        return record

    def h_link(self, req: Request, a: Any, b: Any) -> None:
        first, second = self._live(a), self._live(b)
        if first is second:
            raise ProtocolError("an actor cannot be linked to itself")
        self.links.setdefault(first.id, set()).add(second.id)
        self.links.setdefault(second.id, set()).add(first.id)

    def h_unlink(self, req: Request, a: Any, b: Any) -> None:
        try:
            first, second = self.table.find(check.actor_name(a)), self.table.find(check.actor_name(b))
        except ActorNotFound:
            return
        self._unlink(first.id, second.id)

    def _unlink(self, a: str, b: str) -> None:
        for x, y in ((a, b), (b, a)):
            peers = self.links.get(x)
            if peers is not None:
                peers.discard(y)
                if not peers:
                    del self.links[x]

    def on_actor_exit(self, record: ActorRecord) -> None:
        """An incarnation died; its links fire (abnormal exits) and are consumed."""
        peers = self.links.pop(record.id, set())
        if not peers:
            return
        abnormal = record.abnormal_exit
        ex = record.exit or {}
        for peer_id in peers:
            self._unlink(peer_id, record.id)
            peer = self.table.by_id.get(peer_id)
            if peer is None or peer.state in (EXITED, RESTARTING):
                continue
            if peer.trap_exits:
                if peer.control_ident is not None:
                    self.link_notices += 1
                    self.server.notify(
                        peer.control_ident,
                        {
                            "event": "linked_exit",
                            "actor": record.id,
                            "name": record.name,
                            "exitcode": ex.get("exitcode"),
                            "signal": ex.get("signal"),
                            "reason": ex.get("reason", ""),
                            "abnormal": abnormal,
                            "restarting": record.state == RESTARTING,
                        },
                    )
            elif abnormal:
                self.link_kills += 1
                peer.stop_reason = f"linked actor {record.label!r} exited ({ex.get('reason', 'abnormally')})"
                log.info("killing %s: %s", peer.label, peer.stop_reason)
                self.lifecycle.send_signal(peer, signal.SIGKILL, group=True)
