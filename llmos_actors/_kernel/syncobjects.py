"""Kernel sync objects: named mutexes, semaphores, conditions, barriers and events for any process.

Clients and actors ask by control request; a request that must wait gets its
reply when granted, or when its timeout passes (the daemon's timer decides, so
a grant and a timeout can never both happen). Waiters are served strictly in
arrival order (FIFO).

Holders are processes, told apart per thread or task: a holder is
``(pid, owner)``, where the client sends its pid and an owner token (its thread,
or its asyncio task). When a process dies (kill -9 included) everything it
held is released and its waits are dropped, so the next waiters are granted:
the daemon watches each requesting pid through a pidfd (any process, not only
its children) and also hears actor exits directly. A client handle that is
closed says goodbye, which releases what was taken through it.

Deadlocks between mutex holders: each holder waits on at most one thing at a
time, so the wait-for graph is a set of chains. A request that would close a
cycle is refused with ``DeadlockError`` (the requester does not wait, which
breaks the cycle) and the cycle is kept for ``llmos status``. Cycles formed
otherwise (a condition wait timing out into a re-acquire) are reported there too.
Semaphores are not part of the graph.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .. import _validate as check
from .._rpc.server import Request
from ..errors import CallTimeout, ConfigError, DeadlockError, LockError
from .proctable import ActorRecord
from .service import Service

log = logging.getLogger(__name__)

KINDS = check.SYNC_KINDS
#: Default bound on the number of named objects (``[sync] max_objects``).
MAX_OBJECTS = 10_000
#: Granted tickets remembered, so a cancel that crosses its grant releases it.
GRANTS_KEPT = 4096
#: Deadlock cycles kept for ``llmos status``.
DEADLOCKS_KEPT = 20

Holder = tuple  # (pid, owner)


@dataclass(eq=False)
class Waiter:
    """One request waiting for its reply."""

    holder: Holder
    ident: bytes
    ticket: int
    fut: asyncio.Future
    obj: Any
    op: str  # acquire | wait (condition sleeper) | reacquire | barrier | event
    since: float = field(default_factory=time.monotonic)
    timer: asyncio.TimerHandle | None = None
    notified: bool = False

    def resolve(self, value: Any = None, exc: BaseException | None = None) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if not self.fut.done():
            if exc is not None:
                self.fut.set_exception(exc)
            else:
                self.fut.set_result(value)


class SyncObject:
    kind = ""

    def __init__(self, name: str) -> None:
        self.name = name
        self.created = time.time()
        self.granted = 0
        self.contended = 0
        self.timeouts = 0

    def describe(self) -> dict:
        return {
            "name": self.name,
            "kind": self.kind,
            "granted": self.granted,
            "contended": self.contended,
            "timeouts": self.timeouts,
        }

    def busy(self) -> bool:
        return False


class Mutex(SyncObject):
    kind = "mutex"

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.holder: Holder | None = None
        self.holder_ident: bytes | None = None
        self.held_since = 0.0
        self.queue: deque[Waiter] = deque()

    def describe(self) -> dict:
        out = super().describe()
        out.update(
            holder=_who(self.holder) if self.holder else None,
            held_for=round(time.monotonic() - self.held_since, 3) if self.holder else None,
            waiters=len(self.queue),
        )
        return out

    def busy(self) -> bool:
        return self.holder is not None or bool(self.queue)


class Condition(Mutex):
    kind = "condition"

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.sleepers: deque[Waiter] = deque()

    def describe(self) -> dict:
        out = super().describe()
        out["sleepers"] = len(self.sleepers)
        return out

    def busy(self) -> bool:
        return super().busy() or bool(self.sleepers)


class Semaphore(SyncObject):
    kind = "semaphore"

    def __init__(self, name: str, n: int) -> None:
        super().__init__(name)
        self.n = n
        self.held: dict[Holder, int] = {}
        self.idents: dict[Holder, bytes] = {}
        self.queue: deque[Waiter] = deque()

    @property
    def free(self) -> int:
        return self.n - sum(self.held.values())

    def describe(self) -> dict:
        out = super().describe()
        out.update(n=self.n, free=self.free, holders=[_who(h) for h in self.held], waiters=len(self.queue))
        return out

    def busy(self) -> bool:
        return bool(self.held) or bool(self.queue)


class Barrier(SyncObject):
    kind = "barrier"

    def __init__(self, name: str, parties: int) -> None:
        super().__init__(name)
        self.parties = parties
        self.arrived: list[Waiter] = []
        self.generation = 0

    def describe(self) -> dict:
        out = super().describe()
        out.update(parties=self.parties, waiting=len(self.arrived), generation=self.generation)
        return out

    def busy(self) -> bool:
        return bool(self.arrived)


class Event(SyncObject):
    kind = "event"

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.flag = False
        self.waiters: list[Waiter] = []

    def describe(self) -> dict:
        out = super().describe()
        out.update(set=self.flag, waiters=len(self.waiters))
        return out

    def busy(self) -> bool:
        return bool(self.waiters)


def _who(holder: Holder) -> str:
    return f"pid {holder[0]} ({holder[1]})"


class SyncObjects(Service):
    """Named sync objects, their FIFO queues, holder-death release and deadlock detection."""

    name = "sync"

    def __init__(self, loop: asyncio.AbstractEventLoop, settings: Any = None) -> None:
        self.loop = loop
        settings = dict(settings or {})
        self.max_objects = settings.get("max_objects", MAX_OBJECTS)
        if type(self.max_objects) is not int or self.max_objects < 1:
            raise ConfigError(f"config section [sync]: max_objects must be an int >= 1, not {self.max_objects!r}")
        self.objects: dict[str, SyncObject] = {}
        self.waiting_on: dict[Holder, Mutex] = {}  # the wait-for graph (mutexes and conditions)
        self.tickets: dict[tuple[bytes, int], Waiter] = {}
        self.grants: OrderedDict[tuple[bytes, int], tuple[SyncObject, Holder]] = OrderedDict()
        self.pidfds: dict[int, int] = {}
        self.deadlocks: deque[dict] = deque(maxlen=DEADLOCKS_KEPT)
        self.deadlocks_detected = 0
        self.released_gone_holders = 0

    # ------------------------------------------------------------------ service
    def handlers(self) -> dict[str, Callable[..., Any]]:
        return {
            "sync_acquire": self.h_acquire,
            "sync_release": self.h_release,
            "sync_cancel": self.h_cancel,
            "sync_list": self.h_list,
            "sync_delete": self.h_delete,
            "cond_wait": self.h_cond_wait,
            "cond_notify": self.h_cond_notify,
            "barrier_wait": self.h_barrier_wait,
            "event_set": self.h_event_set,
            "event_clear": self.h_event_clear,
            "event_is_set": self.h_event_is_set,
            "event_wait": self.h_event_wait,
        }

    async def stop(self) -> None:
        for fd in self.pidfds.values():
            self.loop.remove_reader(fd)
            os.close(fd)
        self.pidfds.clear()
        for waiter in list(self.tickets.values()):
            waiter.resolve(exc=LockError("the daemon is stopping"))

    def status(self) -> dict:
        counts: dict[str, int] = {}
        for obj in self.objects.values():
            counts[obj.kind] = counts.get(obj.kind, 0) + 1
        waits = []
        for holder, obj in self.waiting_on.items():
            waits.append(
                {
                    "waiter": _who(holder),
                    "on": f"{obj.kind} {obj.name}",
                    "held_by": _who(obj.holder) if obj.holder else None,
                }
            )
        return {
            "objects": counts,
            "busy": [o.describe() for o in self.objects.values() if o.busy()][:20],
            "waits": waits[:50],
            "deadlocks_detected": self.deadlocks_detected,
            "deadlocks": list(self.deadlocks),
            "cycles_now": self.cycles(),
            "released_gone_holders": self.released_gone_holders,
        }

    # ------------------------------------------------------------------ objects
    def _get(self, kind: Any, name: Any, params: Any = None, *, create: bool = True) -> Any:
        check.sync_kind(kind)
        check.sync_name(name)
        params = params if isinstance(params, dict) else {}
        obj = self.objects.get(name)
        if obj is not None:
            if obj.kind != kind:
                raise LockError(f"{name!r} is a {obj.kind}, not a {kind}")
            if kind == "semaphore" and "n" in params and params["n"] != obj.n:  # type: ignore[attr-defined]
                raise LockError(f"semaphore {name!r} exists with n={obj.n}, not {params['n']!r}")  # type: ignore[attr-defined]
            if kind == "barrier" and "parties" in params and params["parties"] != obj.parties:  # type: ignore[attr-defined]
                raise LockError(
                    f"barrier {name!r} exists with parties={obj.parties}, not {params['parties']!r}"  # type: ignore[attr-defined]
                )
            return obj
        if not create:
            raise LockError(f"no {kind} named {name!r}")
        if kind == "semaphore":
            n = check.semaphore_count(params.get("n"))
        if kind == "barrier":
            parties = check.barrier_parties(params.get("parties"))
        if len(self.objects) >= self.max_objects:
            raise LockError(f"too many sync objects ({self.max_objects}); delete some with sync_delete")
        if kind == "mutex":
            obj = Mutex(name)
        elif kind == "condition":
            obj = Condition(name)
        elif kind == "semaphore":
            obj = Semaphore(name, n)
        elif kind == "barrier":
            obj = Barrier(name, parties)
        else:
            obj = Event(name)
        self.objects[name] = obj
        return obj

    def _waiter(self, req: Request, holder: Holder, ticket: Any, obj: Any, op: str) -> Waiter:
        check.ticket(ticket)
        waiter = Waiter(holder, req.ident, ticket, self.loop.create_future(), obj, op)
        self.tickets[(req.ident, ticket)] = waiter
        waiter.fut.add_done_callback(lambda _: self.tickets.pop((req.ident, ticket), None))
        return waiter

    def _arm(self, waiter: Waiter, timeout: float | None, on_timeout: Callable[[Waiter], None]) -> None:
        if timeout is not None:
            waiter.timer = self.loop.call_later(timeout, on_timeout, waiter)

    def _remember_grant(self, waiter_or_ident: Any, ticket: int, obj: SyncObject, holder: Holder) -> None:
        self.grants[(waiter_or_ident, ticket)] = (obj, holder)
        if len(self.grants) > GRANTS_KEPT:
            self.grants.popitem(last=False)

    # ------------------------------------------------------------------ acquire / release
    def h_acquire(
        self,
        req: Request,
        kind: Any,
        name: Any,
        params: Any = None,
        who: Any = None,
        timeout: Any = None,
        ticket: Any = 0,
    ) -> Any:
        """Acquire a mutex, a condition's lock, or one unit of a semaphore. Replies True, or False on timeout."""
        holder = check.sync_holder(who)
        timeout = check.timeout(timeout)
        check.sync_kind(kind, check.LOCK_KINDS, "acquired")
        obj = self._get(kind, name, params)
        self._watch(holder[0])
        if isinstance(obj, Mutex):
            return self._acquire_mutex(req, obj, holder, ticket, timeout)
        return self._acquire_semaphore(req, obj, holder, ticket, timeout)

    def _acquire_mutex(self, req: Request, m: Mutex, holder: Holder, ticket: Any, timeout: float | None) -> Any:
        if m.holder == holder:
            raise DeadlockError(
                f"{m.kind} {m.name!r} is already held by this holder ({_who(holder)}); it is not reentrant"
            )
        if m.holder is None and not m.queue:
            self._take(m, holder, req.ident)
            if type(ticket) is int:
                self._remember_grant(req.ident, ticket, m, holder)
            return True
        m.contended += 1
        if timeout == 0:
            return False
        cycle = self._cycle_through(holder, m)
        if cycle is not None:
            self.deadlocks_detected += 1
            self.deadlocks.append({"time": time.time(), "cycle": cycle})
            log.warning("deadlock refused: %s", " -> ".join(cycle))
            raise DeadlockError(f"acquiring {m.kind} {m.name!r} would deadlock: " + " -> ".join(cycle))
        waiter = self._waiter(req, holder, ticket, m, "acquire")
        m.queue.append(waiter)
        self.waiting_on[holder] = m
        self._arm(waiter, timeout, self._acquire_timed_out)
        return waiter.fut

    def _take(self, m: Mutex, holder: Holder, ident: bytes) -> None:
        m.holder = holder
        m.holder_ident = ident
        m.held_since = time.monotonic()
        m.granted += 1

    def _grant_mutex(self, m: Mutex) -> None:
        while m.holder is None and m.queue:
            waiter = m.queue.popleft()
            if self.waiting_on.get(waiter.holder) is m:
                del self.waiting_on[waiter.holder]
            if waiter.fut.done():
                continue
            self._take(m, waiter.holder, waiter.ident)
            self._remember_grant(waiter.ident, waiter.ticket, m, waiter.holder)
            waiter.resolve(True if waiter.op == "acquire" else waiter.notified)

    def _acquire_timed_out(self, waiter: Waiter) -> None:
        waiter.timer = None
        m = waiter.obj
        try:
            m.queue.remove(waiter)
        except ValueError:
            return
        if self.waiting_on.get(waiter.holder) is m:
            del self.waiting_on[waiter.holder]
        m.timeouts += 1
        waiter.resolve(False)
        self._grant_mutex(m)  # a waiter behind it may be grantable now (FIFO head left)

    def _acquire_semaphore(self, req: Request, s: Semaphore, holder: Holder, ticket: Any, timeout: float | None) -> Any:
        if s.free > 0 and not s.queue:
            self._take_unit(s, holder, req.ident)
            if type(ticket) is int:
                self._remember_grant(req.ident, ticket, s, holder)
            return True
        s.contended += 1
        if timeout == 0:
            return False
        waiter = self._waiter(req, holder, ticket, s, "acquire")
        s.queue.append(waiter)
        self._arm(waiter, timeout, self._semaphore_timed_out)
        return waiter.fut

    def _take_unit(self, s: Semaphore, holder: Holder, ident: bytes) -> None:
        s.held[holder] = s.held.get(holder, 0) + 1
        s.idents[holder] = ident
        s.granted += 1

    def _grant_semaphore(self, s: Semaphore) -> None:
        while s.queue and s.free > 0:
            waiter = s.queue.popleft()
            if waiter.fut.done():
                continue
            self._take_unit(s, waiter.holder, waiter.ident)
            self._remember_grant(waiter.ident, waiter.ticket, s, waiter.holder)
            waiter.resolve(True)

    def _semaphore_timed_out(self, waiter: Waiter) -> None:
        waiter.timer = None
        s = waiter.obj
        try:
            s.queue.remove(waiter)
        except ValueError:
            return
        s.timeouts += 1
        waiter.resolve(False)
        self._grant_semaphore(s)

    def h_release(self, req: Request, kind: Any, name: Any, who: Any = None) -> None:
        """Release a mutex or condition lock you hold, or one semaphore unit you hold."""
        holder = check.sync_holder(who)
        check.sync_kind(kind, check.LOCK_KINDS, "released")
        obj = self._get(kind, name, create=False)
        if isinstance(obj, Mutex):
            self._release_mutex(obj, holder)
        else:
            self._release_unit(obj, holder)

    def _release_mutex(self, m: Mutex, holder: Holder) -> None:
        if m.holder is None:
            raise LockError(f"cannot release {m.kind} {m.name!r}: it is not held")
        if m.holder != holder:
            raise LockError(f"cannot release {m.kind} {m.name!r}: it is held by {_who(m.holder)}, not by you")
        m.holder = None
        m.holder_ident = None
        self._grant_mutex(m)

    def _release_unit(self, s: Semaphore, holder: Holder) -> None:
        count = s.held.get(holder, 0)
        if count <= 0:
            raise LockError(f"cannot release semaphore {s.name!r}: you hold none of its {s.n} units")
        if count == 1:
            del s.held[holder]
            s.idents.pop(holder, None)
        else:
            s.held[holder] = count - 1
        self._grant_semaphore(s)

    def h_cancel(self, req: Request, ticket: Any) -> None:
        """The requester gave up waiting (interrupted): drop its wait, or undo a grant it never saw."""
        key = (req.ident, ticket)
        waiter = self.tickets.get(key)
        if waiter is not None and not waiter.fut.done():
            self._drop_waiter(waiter)
            waiter.resolve(exc=LockError("cancelled by the requester"))
            return
        granted = self.grants.pop(key, None)
        if granted is None:
            return
        obj, holder = granted
        if isinstance(obj, Mutex) and obj.holder == holder:
            self._release_mutex(obj, holder)
        elif isinstance(obj, Semaphore) and obj.held.get(holder):
            self._release_unit(obj, holder)

    def _drop_waiter(self, waiter: Waiter) -> None:
        """Take a waiter out of whatever queue holds it, and serve the next ones."""
        obj = waiter.obj
        for queue_name in ("queue", "sleepers", "arrived", "waiters"):
            queue = getattr(obj, queue_name, None)
            if queue is not None and waiter in queue:
                queue.remove(waiter)
        if self.waiting_on.get(waiter.holder) is obj:
            del self.waiting_on[waiter.holder]
        if isinstance(obj, Mutex):
            self._grant_mutex(obj)
        elif isinstance(obj, Semaphore):
            self._grant_semaphore(obj)

    # ------------------------------------------------------------------ conditions
    def h_cond_wait(self, req: Request, name: Any, who: Any = None, timeout: Any = None, ticket: Any = 0) -> Any:
        """Release the condition's lock, sleep until notified (or timeout), re-acquire; replies notified."""
        holder = check.sync_holder(who)
        timeout = check.timeout(timeout)
        c = self._get("condition", name, create=False)
        if c.holder != holder:
            raise LockError(f"cannot wait on condition {c.name!r}: you do not hold its lock")
        waiter = self._waiter(req, holder, ticket, c, "wait")
        c.holder = None
        c.holder_ident = None
        c.sleepers.append(waiter)
        self._arm(waiter, timeout, self._cond_timed_out)
        self._grant_mutex(c)
        return waiter.fut

    def _cond_timed_out(self, waiter: Waiter) -> None:
        waiter.timer = None
        c = waiter.obj
        try:
            c.sleepers.remove(waiter)
        except ValueError:
            return
        c.timeouts += 1
        self._requeue(c, waiter, notified=False)

    def _requeue(self, c: Condition, waiter: Waiter, *, notified: bool) -> None:
        """A sleeper wakes: it queues (FIFO) to re-acquire the lock before its wait returns."""
        if waiter.timer is not None:
            waiter.timer.cancel()
            waiter.timer = None
        waiter.op = "reacquire"
        waiter.notified = notified
        c.queue.append(waiter)
        self.waiting_on[waiter.holder] = c
        self._grant_mutex(c)

    def h_cond_notify(self, req: Request, name: Any, who: Any = None, n: Any = 1) -> int:
        """Wake up to ``n`` sleepers (-1: all), oldest first; you must hold the lock. Returns how many."""
        holder = check.sync_holder(who)
        c = self._get("condition", name, create=False)
        if c.holder != holder:
            raise LockError(f"cannot notify condition {c.name!r}: you do not hold its lock")
        check.notify_count(n)
        woken = 0
        while c.sleepers and (n == -1 or woken < n):
            waiter = c.sleepers.popleft()
            if waiter.fut.done():
                continue
            self._requeue(c, waiter, notified=True)
            woken += 1
        return woken

    # ------------------------------------------------------------------ barriers
    def h_barrier_wait(
        self, req: Request, name: Any, parties: Any = None, who: Any = None, timeout: Any = None, ticket: Any = 0
    ) -> Any:
        """Wait until ``parties`` callers have arrived; replies each one's arrival index (0 .. parties-1)."""
        holder = check.sync_holder(who)
        timeout = check.timeout(timeout)
        b = self._get("barrier", name, {"parties": parties} if parties is not None else None)
        self._watch(holder[0])
        waiter = self._waiter(req, holder, ticket, b, "barrier")
        b.arrived.append(waiter)
        if len(b.arrived) >= b.parties:
            arrived, b.arrived = b.arrived, []
            b.generation += 1
            b.granted += 1
            for index, w in enumerate(arrived):
                w.resolve(index)
        else:
            self._arm(waiter, timeout, self._barrier_timed_out)
        return waiter.fut

    def _barrier_timed_out(self, waiter: Waiter) -> None:
        waiter.timer = None
        b = waiter.obj
        if waiter in b.arrived:
            b.arrived.remove(waiter)
            b.timeouts += 1
            waiter.resolve(exc=CallTimeout(f"barrier {b.name!r}: {len(b.arrived) + 1} of {b.parties} arrived"))

    # ------------------------------------------------------------------ events
    def h_event_set(self, req: Request, name: Any) -> None:
        e = self._get("event", name)
        e.flag = True
        waiters, e.waiters = e.waiters, []
        for waiter in waiters:
            waiter.resolve(True)
        e.granted += len(waiters)

    def h_event_clear(self, req: Request, name: Any) -> None:
        self._get("event", name).flag = False

    def h_event_is_set(self, req: Request, name: Any) -> bool:
        return self._get("event", name).flag

    def h_event_wait(self, req: Request, name: Any, who: Any = None, timeout: Any = None, ticket: Any = 0) -> Any:
        holder = check.sync_holder(who)
        timeout = check.timeout(timeout)
        e = self._get("event", name)
        if e.flag:
            return True
        if timeout == 0:
            return False
        self._watch(holder[0])
        waiter = self._waiter(req, holder, ticket, e, "event")
        e.waiters.append(waiter)
        self._arm(waiter, timeout, self._event_timed_out)
        return waiter.fut

    def _event_timed_out(self, waiter: Waiter) -> None:
        waiter.timer = None
        e = waiter.obj
        if waiter in e.waiters:
            e.waiters.remove(waiter)
            e.timeouts += 1
            waiter.resolve(False)

    # ------------------------------------------------------------------ listing
    def h_list(self, req: Request) -> list[dict]:
        return [obj.describe() for obj in self.objects.values()]

    def h_delete(self, req: Request, name: Any) -> bool:
        """Forget an object nobody holds or waits on; False if there was none."""
        obj = self.objects.get(name) if isinstance(name, str) else None
        if obj is None:
            return False
        if obj.busy():
            raise LockError(f"{obj.kind} {name!r} is in use (held or waited on); it cannot be deleted")
        del self.objects[name]
        return True

    # ------------------------------------------------------------------ deadlocks
    def _cycle_through(self, holder: Holder, m: Mutex) -> list[str] | None:
        """The cycle ``holder`` waiting on ``m`` would close, as readable steps, or None."""
        steps = [f"{_who(holder)} wants {m.kind} {m.name!r}"]
        seen = {holder}
        current: Mutex | None = m
        while current is not None and current.holder is not None:
            owner = current.holder
            steps.append(f"held by {_who(owner)}")
            if owner == holder:
                return steps
            if owner in seen:
                return None
            seen.add(owner)
            current = self.waiting_on.get(owner)
            if current is not None:
                steps.append(f"which wants {current.kind} {current.name!r}")
        return None

    def cycles(self) -> list[list[str]]:
        """Cycles in the wait-for graph right now (normally none: requests closing one are refused)."""
        found = []
        reported: set = set()
        for start in self.waiting_on:
            path = []
            node: Holder | None = start
            visited: set = set()
            while node is not None and node not in visited:
                visited.add(node)
                path.append(node)
                obj = self.waiting_on.get(node)
                node = obj.holder if obj is not None else None
            if node is not None and node in path:
                cycle = path[path.index(node) :]
                key = frozenset(cycle)
                if key not in reported:
                    reported.add(key)
                    found.append([_who(h) for h in cycle])
        return found

    # ------------------------------------------------------------------ holders that go away
    def _watch(self, pid: int) -> None:
        """Release what ``pid`` holds when it dies: a pidfd works for any process, not only children."""
        if pid in self.pidfds or pid == os.getpid():
            return
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            raise LockError(f"process {pid} does not exist") from None
        except OSError as exc:  # pragma: no cover - kernels without pidfds
            log.warning("cannot watch pid %d (%s): its locks are released only on goodbye", pid, exc)
            return
        self.pidfds[pid] = fd
        self.loop.add_reader(fd, self._pid_died, pid)

    def _pid_died(self, pid: int) -> None:
        fd = self.pidfds.pop(pid, None)
        if fd is not None:
            self.loop.remove_reader(fd)
            os.close(fd)
        self.release_where(lambda holder, ident: holder[0] == pid, f"process {pid} died")

    def on_actor_exit(self, record: ActorRecord) -> None:
        """Exit hook: an actor's process is gone (the pidfd would tell us too, a little later)."""
        if record.pid is not None and record.pid in self.pidfds:
            self._pid_died(record.pid)

    def client_gone(self, ident: bytes) -> None:
        """A client handle said goodbye: release what was taken through it."""
        self.release_where(lambda holder, who_ident: who_ident == ident, "its client handle closed")

    def release_where(self, match: Callable[[Holder, bytes | None], bool], why: str) -> None:
        """Release every holding and drop every wait of the holders ``match`` selects."""
        for obj in list(self.objects.values()):
            waiters: list[Waiter] = []
            for queue_name in ("queue", "sleepers", "arrived", "waiters"):
                waiters.extend(w for w in getattr(obj, queue_name, ()) if match(w.holder, w.ident))
            for waiter in waiters:
                self._drop_waiter(waiter)
                waiter.resolve(exc=LockError(f"wait dropped: {why}"))
            if isinstance(obj, Mutex) and obj.holder is not None and match(obj.holder, obj.holder_ident):
                log.info("%s %r released: %s held it and %s", obj.kind, obj.name, _who(obj.holder), why)
                self.released_gone_holders += 1
                obj.holder = None
                obj.holder_ident = None
                self._grant_mutex(obj)
            elif isinstance(obj, Semaphore):
                gone = [h for h in obj.held if match(h, obj.idents.get(h))]
                for h in gone:
                    self.released_gone_holders += obj.held.pop(h)
                    obj.idents.pop(h, None)
                if gone:
                    self._grant_semaphore(obj)
