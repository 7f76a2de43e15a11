"""The process table: one record per actor the daemon started, live or exited."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from .._wire.address import ActorAddress
from ..errors import ActorDiedError, ActorImportError, ActorNotFound, LlmosError, NameTaken
from .linux import signal_name

STARTING = "starting"
RUNNING = "running"
STOPPING = "stopping"
RESTARTING = "restarting"
EXITED = "exited"
LIVE_STATES = (STARTING, RUNNING, STOPPING, RESTARTING)


@dataclass(eq=False)
class ActorRecord:
    """Everything the daemon knows about one actor."""

    id: str
    name: str
    cls: str
    request: dict
    endpoint: str
    overflow: str = "block"
    state: str = STARTING
    pid: int | None = None
    cpus: list[int] | None = None
    gpus: list[int] | None = None
    priority: int = 4
    nice: int = 0
    exclusive: bool = False
    restart: str = "temporary"
    created: float = field(default_factory=time.time)
    started_mono: float = field(default_factory=time.monotonic)
    ready_mono: float | None = None
    incarnation: int = 0
    restarts: int = 0
    stats: dict = field(default_factory=dict)
    exit: dict | None = None
    failure: dict | None = None  # what the actor reported before exiting (init errors)
    stop_reason: str = ""  # why the daemon stopped it, if it did
    watchers: set[bytes] = field(default_factory=set)
    tail: deque = field(default_factory=lambda: deque(maxlen=40))
    ready: asyncio.Future | None = None
    exited_event: asyncio.Event = field(default_factory=asyncio.Event)
    placement_note: str = ""
    # -- supervision -------------------------------------------------------
    supervisor: str = ""  # id of the supervisor it belongs to ("" = standalone)
    limits: dict = field(default_factory=dict)  # per-actor intensity/period/backoff overrides
    wanted_down: bool = False  # stopped by request: never restarted
    planned: bool = False  # its supervisor stops it to restart it with its group
    doomed: str = ""  # its supervisor gave up: why (it is not restarted)
    down_mono: float | None = None  # when the last incarnation died (restart latency)
    last_exit: dict | None = None  # exit record of the previous incarnation
    trap_exits: bool = False  # linked exits arrive as ``on_exit`` calls instead of killing it
    control_ident: bytes | None = None  # the actor runtime's control connection (for notices)
    tcp_endpoint: str = ""  # its CurveZMQ endpoint when the daemon listens on TCP
    owner: str = "daemon"  # the identity that spawned it (``auth.Identity.name``)
    token: str = ""  # this incarnation's secret, handed over at fork: proves "I am this actor"
    stop_mode: dict = field(default_factory=dict)  # how a requested stop treats calls in flight

    @property
    def label(self) -> str:
        return self.name or self.id

    @property
    def live(self) -> bool:
        return self.state in LIVE_STATES

    def address(self) -> dict:
        return self.actor_address().to_dict()

    def actor_address(self) -> ActorAddress:
        return ActorAddress(self.id, self.name, self.endpoint, self.overflow, self.tcp_endpoint)

    def exit_notice(self) -> dict:
        """What watchers hear when an incarnation dies; ``restarting`` says whether another follows."""
        ex = self.exit or {}
        return {
            "event": "exited",
            "actor": self.id,
            "name": self.name,
            "pid": self.pid,
            "exitcode": ex.get("exitcode"),
            "signal": ex.get("signal"),
            "reason": ex.get("reason", ""),
            "incarnation": ex.get("incarnation", self.incarnation),
            "restarting": self.state == RESTARTING,
        }

    def restarted_notice(self) -> dict:
        return {
            "event": "restarted",
            "actor": self.id,
            "name": self.name,
            "pid": self.pid,
            "incarnation": self.incarnation,
            "restarts": self.restarts,
        }

    @property
    def abnormal_exit(self) -> bool:
        """Whether the last incarnation died abnormally: a non-zero (or unknown) exit code, or a signal."""
        ex = self.exit or {}
        return bool(ex.get("signal")) or ex.get("exitcode") != 0

    def to_dict(self) -> dict:
        now = time.monotonic()
        return {
            "id": self.id,
            "name": self.name,
            "cls": self.cls,
            "state": self.state,
            "pid": self.pid,
            "cpus": self.cpus,
            "gpus": self.gpus,
            "priority": self.priority,
            "nice": self.nice,
            "exclusive": self.exclusive,
            "restart": self.restart,
            "restarts": self.restarts,
            "incarnation": self.incarnation,
            "endpoint": self.endpoint,
            "created": self.created,
            "uptime": (now - self.ready_mono) if self.ready_mono and self.live else None,
            "stats": dict(self.stats),
            "exit": self.exit,
            "last_exit": self.last_exit,
            "supervisor": self.supervisor,
            "trap_exits": self.trap_exits,
            "note": self.placement_note,
        }


def exit_reason(exitcode: int | None, signum: int | None, *, failure: dict | None, stop_reason: str) -> str:
    """One human line explaining why an actor exited."""
    if failure:
        return failure.get("message") or failure.get("type", "failed to start")
    if stop_reason:
        return stop_reason
    if signum:
        return f"killed by {signal_name(signum)}"
    if exitcode:
        return f"exited with code {exitcode}"
    return "exited normally"


class ProcessTable:
    """Actors by id, by live name and by pid; exited records kept up to a bound."""

    def __init__(self, keep_exited: int = 200, on_forget: Callable[[ActorRecord], None] | None = None) -> None:
        self.by_id: dict[str, ActorRecord] = {}
        self.by_name: dict[str, ActorRecord] = {}
        self.by_pid: dict[int, ActorRecord] = {}
        self._exited: OrderedDict[str, None] = OrderedDict()
        self.keep_exited = keep_exited
        #: Called with each exited record the table lets go of (its logs can go with it).
        #: Called with each exited record the table forgets (beyond ``keep_exited``).
        self.on_forget = on_forget

    def new_id(self) -> str:
        while True:
            actor_id = "a" + secrets.token_hex(5)
            if actor_id not in self.by_id:
                return actor_id

    def add(self, record: ActorRecord) -> None:
        if record.name:
            old = self.by_name.get(record.name)
            if old is not None and old.live:
                raise NameTaken(f"an actor named {record.name!r} is already running (id {old.id})")
            self.by_name[record.name] = record
        self.by_id[record.id] = record

    def set_pid(self, record: ActorRecord, pid: int) -> None:
        if record.pid is not None:
            self.by_pid.pop(record.pid, None)
        record.pid = pid
        self.by_pid[pid] = record

    def find(self, name_or_id: str) -> ActorRecord:
        record = self.by_name.get(name_or_id) or self.by_id.get(name_or_id)
        if record is None:
            raise ActorNotFound(f"no actor named {name_or_id!r}")
        return record

    def mark_exited(self, record: ActorRecord) -> None:
        record.state = EXITED
        if record.pid is not None:
            self.by_pid.pop(record.pid, None)
        self._exited[record.id] = None
        while len(self._exited) > self.keep_exited:
            old_id, _ = self._exited.popitem(last=False)
            old = self.by_id.pop(old_id, None)
            if old is not None and self.by_name.get(old.name) is old:
                del self.by_name[old.name]
            if old is not None and self.on_forget is not None:
                self.on_forget(old)

    def has_label(self, label: str) -> bool:
        """Whether any record kept (live or exited) writes to or shows the log file ``label``."""
        return any(r.label == label for r in self.by_id.values())

    def mark_restarting(self, record: ActorRecord) -> None:
        """An incarnation died and its supervisor will start another: still live, no process."""
        record.state = RESTARTING
        if record.pid is not None:
            self.by_pid.pop(record.pid, None)

    def revive(self, record: ActorRecord) -> None:
        """A restarted incarnation: no longer among the exited."""
        self._exited.pop(record.id, None)

    def live(self) -> list[ActorRecord]:
        return [r for r in self.by_id.values() if r.live]

    def all(self) -> list[ActorRecord]:
        return list(self.by_id.values())

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.by_id.values():
            out[r.state] = out.get(r.state, 0) + 1
        return out


def start_error(record: ActorRecord) -> LlmosError:
    """Why ``spawn`` failed, as the caller should see it."""
    failure = record.failure or {}
    ex = record.exit or {}
    if failure.get("code") == "import":
        err: LlmosError = ActorImportError(failure.get("message", "cannot import the actor class"))
    else:
        what = failure.get("type")
        detail = f"{what}: {failure.get('message', '')}" if what else ex.get("reason", "")
        when = "during __init__/on_start" if failure else "before it was ready"
        tail = "\n".join(ex.get("tail", [])[-10:])
        message = f"actor {record.label!r} died {when}: {detail}"
        if tail and not failure:
            message += f"\nlast output:\n{tail}"
        err = ActorDiedError(
            message, exitcode=ex.get("exitcode"), signal=ex.get("signal"), reason=detail, actor=record.label
        )
    if failure.get("traceback"):
        err.remote_traceback = failure["traceback"]
    return err
