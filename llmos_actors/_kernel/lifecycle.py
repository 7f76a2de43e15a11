"""Process creation and destruction: spawn through the fork server, READY, exit, kill.

Every actor the daemon starts goes through here; every exit (reported by the
fork server, or reaped by the daemon after adopting an orphan) ends here, is
recorded with its exit code or signal, its last lines of output and a
one-line reason, and is announced to everyone watching that actor.

Restarts: before an exit is announced, the services are asked whether another
incarnation will follow (the supervisor answers). If so the record
stays live in state ``restarting`` (same id, name, endpoint, placement and
constructor arguments), the death notice says ``"restarting": true``, and
``restart`` later starts the new incarnation, whose READY sends watchers a
``restarted`` notice.

What a running actor reports (READY, heartbeats) is ``actor_reports``; stopping it, ``stopping``.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import signal
import time
from collections.abc import Callable
from typing import Any

from .._spawnspec import check_spawn_request
from ..config import Config
from ..errors import ActorImportError, LlmosError, ProtocolError
from .actor_reports import ActorReports
from .linux import describe_status, signal_name
from .logs import LogCollector
from .proctable import (
    RESTARTING,
    STARTING,
    STOPPING,
    ActorRecord,
    ProcessTable,
    exit_reason,
    start_error,
)
from .resources import Inventory, nice_for
from .service import Services
from .stopping import Stopping
from .zygote_link import ZygoteLink

log = logging.getLogger(__name__)

#: Settings of the spawn request that the actor process itself needs.
_CHILD_KEYS = ("cls", "path", "main_file", "args", "name", "overflow", "mailbox_size", "max_concurrency")
#: What the daemon adds for a new incarnation: its latest snapshot, its ``actor_subscribe`` subscriptions.
_CHILD_KEYS += ("snapshot", "subscriptions")

Notify = Callable[[ActorRecord, dict], None]
Publish = Callable[[str, dict], None]


class Lifecycle(ActorReports, Stopping):
    """Starts actors, records their exits and stops them.

    Args:
        notify: called with ``(record, notice)`` to tell watchers (and monitors) of a death.
        events: the services to ask about restarts and tell of new records and exits.
        publish: publishes a system event (``sys.actor.*``).
    """

    def __init__(
        self,
        config: Config,
        loop: asyncio.AbstractEventLoop,
        table: ProcessTable,
        inventory: Inventory,
        zygote: ZygoteLink,
        logs: LogCollector,
        notify: Notify,
        *,
        events: Services | None = None,
        publish: Publish | None = None,
    ) -> None:
        #: ``record -> keys its TCP endpoint accepts`` (the daemon sets it: its security policy).
        self.callers: Callable[[ActorRecord], list[str]] | None = None
        self.config = config
        self.loop = loop
        self.table = table
        self.inventory = inventory
        self.zygote = zygote
        self.logs = logs
        self.notify = notify
        self.events = events if events is not None else Services()
        self.publish: Publish = publish or (lambda topic, body: None)
        self.outputs: dict[str, Any] = {}
        self.restart_times: list[float] = []
        self.spawn_times: list[float] = []

    # ------------------------------------------------------------------ spawning
    def new_record(self, request: dict, actor_id: str | None = None, internal: dict | None = None) -> ActorRecord:
        """Validate a spawn request (the client's own validator, again) and enter it in the table.

        Args:
            actor_id: the id it had before the daemon restarted (recovery); else a new one.
            internal: fields only the daemon sets (recovery: the snapshot file it restores from, its
                run-time subscriptions), added after the check, so no client can name a file to read.

        Raises:
            ProtocolError: the request is malformed (nothing was entered).
            NameTaken: a live actor has that name.
        """
        try:
            check_spawn_request(request)
        except (TypeError, ValueError, ActorImportError) as exc:
            raise ProtocolError(f"invalid spawn request: {exc}") from None
        request.update(internal or {})
        actor_id = actor_id or self.table.new_id()
        priority = request.get("priority")
        record = ActorRecord(
            id=actor_id,
            name=request.get("name") or "",
            cls=request["cls"],
            request=request,
            endpoint=self.config.actor_endpoint(actor_id),
            overflow=request.get("overflow") or self.config.overflow,
            priority=4 if priority is None else priority,
            restart=request.get("restart") or "temporary",
            exclusive=bool(request.get("exclusive")),
            supervisor=request.get("supervisor") or "",
            limits=dict(request.get("restart_limits") or {}),
        )
        record.tail = type(record.tail)(maxlen=self.config.log_tail_lines)
        self.table.add(record)
        return record

    def _unrecord(self, record: ActorRecord) -> None:
        """Take back a record that never forked: table entry and placement."""
        self.inventory.release(record.id)
        if self.table.by_id.get(record.id) is record:
            del self.table.by_id[record.id]
        if record.name and self.table.by_name.get(record.name) is record:
            del self.table.by_name[record.name]

    async def spawn(
        self, request: dict, owner: str = "daemon", *, actor_id: str | None = None, internal: dict | None = None
    ) -> ActorRecord:
        """Start a new actor and return its record once it is READY.

        Whatever fails before the fork takes back what was reserved (table entry, cores);
        whatever fails after it is recorded as the incarnation's exit.

        Raises:
            ActorImportError / ActorDiedError: it failed to start (reason attached).
            ResourceUnavailable / NameTaken / ProtocolError: refused before forking.
        """
        record = self.new_record(request, actor_id, internal)
        record.owner = owner
        try:
            placement = self.inventory.place(record.id, request.get("cpus"), request.get("gpus"), record.exclusive)
            record.cpus, record.gpus = placement.cpus, placement.gpus
            self.events.record_created(record)
        except BaseException:
            self._unrecord(record)
            raise
        await self.start(record)
        return record

    async def restart(self, record: ActorRecord) -> bool:
        """Start the next incarnation of a ``restarting`` record; False if it is no longer wanted.

        It keeps its id, name, endpoint, constructor arguments, priority and placement
        (held through the restart, so exclusive cores cannot be taken meanwhile).

        Raises:
            LlmosError: the new incarnation failed to start (its exit was recorded as usual).
        """
        if record.state != RESTARTING or record.wanted_down or record.doomed:
            return False
        placement = self.inventory.placements.get(record.id)
        if placement is None:  # defensive: re-place as first asked
            placement = self.inventory.place(
                record.id, record.request.get("cpus"), record.request.get("gpus"), record.exclusive
            )
        record.cpus, record.gpus = placement.cpus, placement.gpus
        self.table.revive(record)
        record.restarts += 1
        await self.start(record)
        return True

    def child_spec(self, record: ActorRecord) -> dict:
        request = record.request
        placement = self.inventory.placements.get(record.id)
        spec = {k: request[k] for k in _CHILD_KEYS if request.get(k) is not None}
        spec["name"] = record.name
        spec["cpus"] = record.cpus
        spec["nice"] = nice_for(record.priority)
        spec["priority"] = record.priority
        spec["token"] = record.token
        if self.callers is not None:
            spec["callers"] = self.callers(record)
        spec["owner"] = record.owner  # who spawned it: agents take approvals from this identity only
        env = dict(request.get("env") or {})
        if placement is not None:
            env.update(self.inventory.child_env(placement))
        spec["env"] = env
        return spec

    async def start(self, record: ActorRecord) -> None:
        """Fork one incarnation of ``record`` and wait for its READY (or its death)."""
        record.state = STARTING
        record.token = secrets.token_urlsafe(24)
        record.incarnation += 1
        record.exit = None
        record.failure = None
        record.stop_reason = ""
        record.stats = {}
        record.exited_event.clear()
        record.ready = self.loop.create_future()
        record.started_mono = time.monotonic()
        pid_ref: list = [None]
        output = None
        try:
            spec = self.child_spec(record)
            output, fds = self.logs.capture(record.label, pid_ref, record.tail)
            self.outputs[record.id] = output
            pid = await self.zygote.fork(record.id, spec, fds)
        except BaseException as exc:
            if output is not None:
                self.outputs.pop(record.id, None)
                output.close()
            self._finish(record, None, None, reason=f"could not fork: {exc}")
            raise
        pid_ref[0] = pid
        self.table.set_pid(record, pid)
        if record.state == STOPPING:  # stopped while it was being forked
            self.send_signal(record, signal.SIGKILL, group=True)
        try:
            await asyncio.wait_for(asyncio.shield(record.ready), self.config.spawn_timeout)
        except asyncio.TimeoutError:
            record.stop_reason = f"not ready within spawn_timeout={self.config.spawn_timeout} s"
            self.send_signal(record, signal.SIGKILL, group=True)
            raise LlmosError(
                f"actor {record.label!r} did not become ready within {self.config.spawn_timeout} s"
            ) from None
        self.spawn_times.append(time.monotonic() - record.started_mono)
        del self.spawn_times[:-1000]

    # ------------------------------------------------------------------ exits
    def reaped(self, pid: int, status: int) -> None:
        """A child exited (reported by the fork server, or reaped by us after adoption)."""
        record = self.table.by_pid.get(pid)
        if record is None:
            return
        exitcode, signum = describe_status(status)
        self._finish(record, exitcode, signum)

    def _finish(self, record: ActorRecord, exitcode: int | None, signum: int | None, reason: str = "") -> None:
        output = self.outputs.pop(record.id, None)
        if output is not None:
            output.drain()
            output.close()
        reason = reason or exit_reason(exitcode, signum, failure=record.failure, stop_reason=record.stop_reason)
        record.exit = {
            "exitcode": exitcode,
            "signal": signum,
            "signal_name": signal_name(signum),
            "reason": reason,
            "time": time.time(),
            "incarnation": record.incarnation,
            "tail": list(record.tail),
        }
        if record.failure and record.failure.get("traceback"):
            record.exit["traceback"] = record.failure["traceback"]
        record.down_mono = time.monotonic()
        record.last_exit = record.exit
        try:
            restarting = self.events.decide_restart(record)
        except Exception:  # a bug there must not lose the exit
            log.exception("restart decision for %s failed", record.label)
            restarting = False
        if restarting:
            self.table.mark_restarting(record)
        else:
            self.table.mark_exited(record)
            self.inventory.release(record.id)
        if record.ready is not None and not record.ready.done():
            record.ready.set_exception(start_error(record))
            record.ready.exception()  # retrieved here; spawn re-raises it
        log.info(
            "actor %s (pid %s) exited: %s%s",
            record.label,
            record.pid,
            record.exit["reason"],
            " (restarting)" if restarting else "",
        )
        notice = record.exit_notice()
        self.notify(record, notice)
        self.publish("sys.actor.exited", notice)
        record.exited_event.set()
        self.events.actor_exited(record)

    def abandon(self, record: ActorRecord, reason: str) -> None:
        """A ``restarting`` record will not be restarted after all: it becomes ``exited``.

        Watchers were told a restart was coming; they now get a final death notice.
        """
        if record.state != RESTARTING:
            return
        record.exit = dict(record.exit or {}, reason=reason)
        record.last_exit = record.exit
        self.table.mark_exited(record)
        self.inventory.release(record.id)
        log.info("actor %s will not be restarted: %s", record.label, reason)
        notice = record.exit_notice()
        self.notify(record, notice)
        self.publish("sys.actor.exited", notice)
