"""Kernel sync objects: named mutexes, semaphores, conditions, barriers and events for any process.

Clients and actors ask by control request; a request that must wait gets its
reply when granted, or when its timeout passes (the daemon's timer decides, so
a grant and a timeout can never both happen). Waiters are served strictly in
arrival order (FIFO). Each kind's rules are its own class (``sync_kinds``);
this service routes requests to objects by name, creates them on first use,
and releases what a holder held when it goes away.

Holders are processes, told apart per thread or task: a holder is
``(pid, owner)``, where the client sends its pid and an owner token (its thread,
or its asyncio task). When a process dies (kill -9 included) everything it
held is released and its waits are dropped, so the next waiters are granted:
the daemon watches each requesting pid through a pidfd (any process, not only
its children) and also hears actor exits directly. A client handle that is
closed says goodbye, which releases what was taken through it.

Deadlocks between mutex holders: a request that would close a cycle of waiters
is refused with ``DeadlockError`` (the requester does not wait, which breaks the
cycle) and the cycle is kept for ``llmos status``. Cycles formed otherwise (a
condition wait timing out into a re-acquire) are reported there too.
Semaphores are not part of the graph.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from typing import Any

from .. import _validate as check
from .._clock import Clock, LoopClock
from .._rpc.server import Request
from ..errors import ConfigError, LimitExceeded, LockError
from .proctable import ActorRecord
from .service import Service
from .sync_kinds import (
    KIND_CLASSES,
    BarrierState,
    ConditionState,
    EventState,
    MutexState,
    SemaphoreState,
)
from .sync_waits import Holder, SyncLedger, SyncState, Waiter
from .sync_waits import who as describe_holder

log = logging.getLogger(__name__)

#: Default bound on the number of named objects (``[sync] max_objects``).
MAX_OBJECTS = 10_000


class SyncObjects(Service):
    """Named sync objects: routing, creation by name, holder-death release (see the module docstring).

    Args:
        loop: watches holder pids; also the clock unless ``clock`` is given.
        settings: the ``[sync]`` config section.
    """

    name = "sync"

    def __init__(self, loop: asyncio.AbstractEventLoop, settings: Any = None, *, clock: Clock | None = None) -> None:
        self.loop = loop
        settings = dict(settings or {})
        self.max_objects = settings.get("max_objects", MAX_OBJECTS)
        if type(self.max_objects) is not int or self.max_objects < 1:
            raise ConfigError(f"config section [sync]: max_objects must be an int >= 1, not {self.max_objects!r}")
        self.ledger = SyncLedger(clock if clock is not None else LoopClock(loop))
        self.objects: dict[str, SyncState] = {}
        self.tickets: dict[tuple[bytes, int], Waiter] = {}
        self.pidfds: dict[int, int] = {}
        #: Waits queued per connection, and their bound (``[limits] waiters``; the daemon sets it).
        self.waiting: dict[bytes, int] = {}
        self.max_waiters = 10_000

    @property
    def released_gone_holders(self) -> int:
        return self.ledger.released_gone_holders

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
        ledger = self.ledger
        return {
            "objects": counts,
            "busy": [o.describe() for o in self.objects.values() if o.busy()][:20],
            "waits": ledger.waits(50),
            "deadlocks_detected": ledger.deadlocks_detected,
            "deadlocks": list(ledger.deadlocks),
            "cycles_now": ledger.cycles(),
            "released_gone_holders": ledger.released_gone_holders,
        }

    def cycles(self) -> list[list[str]]:
        return self.ledger.cycles()

    # ------------------------------------------------------------------ objects
    def _get(self, kind: Any, name: Any, params: Any = None, *, create: bool = True) -> Any:
        check.sync_kind(kind)
        check.sync_name(name)
        params = params if isinstance(params, dict) else {}
        obj = self.objects.get(name)
        if obj is not None:
            if obj.kind != kind:
                raise LockError(f"{name!r} is a {obj.kind}, not a {kind}")
            if isinstance(obj, SemaphoreState) and "n" in params and params["n"] != obj.n:
                raise LockError(f"semaphore {name!r} exists with n={obj.n}, not {params['n']!r}")
            if isinstance(obj, BarrierState) and "parties" in params and params["parties"] != obj.parties:
                raise LockError(f"barrier {name!r} exists with parties={obj.parties}, not {params['parties']!r}")
            return obj
        if not create:
            raise LockError(f"no {kind} named {name!r}")
        extra: tuple = ()
        if kind == "semaphore":
            extra = (check.semaphore_count(params.get("n")),)
        elif kind == "barrier":
            extra = (check.barrier_parties(params.get("parties")),)
        if len(self.objects) >= self.max_objects:
            raise LockError(f"too many sync objects ({self.max_objects}); delete some with sync_delete")
        obj = self.objects[name] = KIND_CLASSES[kind](name, self.ledger, *extra)
        return obj

    @staticmethod
    def _holder(req: Request, who: Any) -> Holder:
        """The holder a request acts for: its connection (and the thread or task it names there).

        The pid is the kernel's (``SO_PEERCRED``), never the one the client wrote, and the owner
        token is scoped to the requesting connection: no client can act as another's holder.
        Remote (TCP) clients have no pid here; their connection alone names them.
        """
        _pid, owner = check.sync_holder(who)
        peer = getattr(req, "peer", None)
        if peer is None:  # not through the control socket's gate (the daemon's own calls)
            return (_pid, owner)
        return (peer.pid or 0, f"{req.ident.hex()}/{owner}")

    def _waiter(self, req: Request, holder: Holder, ticket: Any, obj: SyncState, op: str) -> Waiter:
        check.ticket(ticket)
        ident = req.ident
        waiting = self.waiting.get(ident, 0)
        if waiting >= self.max_waiters:
            raise LimitExceeded(
                f"too many waits from one connection ({waiting}): limit [limits] waiters = {self.max_waiters} reached"
            )
        waiter = Waiter(holder, ident, ticket, self.loop.create_future(), obj, op, since=self.ledger.clock.time())
        key = (ident, ticket)
        self.tickets[key] = waiter
        self.waiting[ident] = waiting + 1
        waiter.fut.add_done_callback(lambda _: self._unwait(key))
        return waiter

    def _unwait(self, key: tuple[bytes, Any]) -> None:
        self.tickets.pop(key, None)
        left = self.waiting.get(key[0], 0) - 1
        if left > 0:
            self.waiting[key[0]] = left
        else:
            self.waiting.pop(key[0], None)

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
        holder = self._holder(req, who)
        timeout = check.timeout(timeout)
        check.sync_kind(kind, check.LOCK_KINDS, "acquired")
        obj = self._get(kind, name, params)
        self._watch(holder[0])
        granted = obj.try_acquire(holder, req.ident, ticket, timeout)
        if granted is not None:
            return granted
        waiter = self._waiter(req, holder, ticket, obj, "acquire")
        obj.enqueue(waiter, timeout)
        return waiter.fut

    def h_release(self, req: Request, kind: Any, name: Any, who: Any = None) -> None:
        """Release a mutex or condition lock you hold, or one semaphore unit you hold."""
        holder = self._holder(req, who)
        check.sync_kind(kind, check.LOCK_KINDS, "released")
        self._get(kind, name, create=False).release(holder)

    def h_cancel(self, req: Request, ticket: Any) -> None:
        """The requester gave up waiting (interrupted): drop its wait, or undo a grant it never saw."""
        key = (req.ident, ticket)
        waiter = self.tickets.get(key)
        if waiter is not None and not waiter.fut.done():
            waiter.obj.remove(waiter)
            waiter.resolve(exc=LockError("cancelled by the requester"))
            return
        granted = self.ledger.grants.pop(key, None)
        if granted is not None:
            obj, holder = granted
            if obj.holds(holder):
                obj.release(holder)

    # ------------------------------------------------------------------ conditions, barriers, events
    def h_cond_wait(self, req: Request, name: Any, who: Any = None, timeout: Any = None, ticket: Any = 0) -> Any:
        """Release the condition's lock, sleep until notified (or timeout), re-acquire; replies notified."""
        holder = self._holder(req, who)
        timeout = check.timeout(timeout)
        c: ConditionState = self._get("condition", name, create=False)
        c.check_holder(holder, "wait on")
        waiter = self._waiter(req, holder, ticket, c, "wait")
        c.sleep(waiter, timeout)
        return waiter.fut

    def h_cond_notify(self, req: Request, name: Any, who: Any = None, n: Any = 1) -> int:
        """Wake up to ``n`` sleepers (-1: all), oldest first; you must hold the lock. Returns how many."""
        holder = self._holder(req, who)
        c: ConditionState = self._get("condition", name, create=False)
        c.check_holder(holder, "notify")
        return c.notify(holder, check.notify_count(n))

    def h_barrier_wait(
        self, req: Request, name: Any, parties: Any = None, who: Any = None, timeout: Any = None, ticket: Any = 0
    ) -> Any:
        """Wait until ``parties`` callers have arrived; replies each one's arrival index (0 .. parties-1)."""
        holder = self._holder(req, who)
        timeout = check.timeout(timeout)
        b: BarrierState = self._get("barrier", name, {"parties": parties} if parties is not None else None)
        self._watch(holder[0])
        waiter = self._waiter(req, holder, ticket, b, "barrier")
        b.arrive(waiter, timeout)
        return waiter.fut

    def h_event_set(self, req: Request, name: Any) -> None:
        self._get("event", name).set()

    def h_event_clear(self, req: Request, name: Any) -> None:
        self._get("event", name).clear()

    def h_event_is_set(self, req: Request, name: Any) -> bool:
        return self._get("event", name).flag

    def h_event_wait(self, req: Request, name: Any, who: Any = None, timeout: Any = None, ticket: Any = 0) -> Any:
        holder = self._holder(req, who)
        timeout = check.timeout(timeout)
        e: EventState = self._get("event", name)
        if e.flag:
            return True
        if timeout == 0:
            return False
        self._watch(holder[0])
        waiter = self._waiter(req, holder, ticket, e, "event")
        e.enqueue(waiter, timeout)
        return waiter.fut

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

    # ------------------------------------------------------------------ holders that go away
    def _watch(self, pid: int) -> None:
        """Release what ``pid`` holds when it dies: a pidfd works for any process, not only children."""
        if pid <= 0 or pid in self.pidfds or pid == os.getpid():
            return  # 0: a remote client (released when its connection says goodbye)
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
        """An actor's process is gone (the pidfd would tell us too, a little later)."""
        if record.pid is not None and record.pid in self.pidfds:
            self._pid_died(record.pid)

    def client_gone(self, ident: bytes) -> None:
        """A client handle said goodbye: release what was taken through it."""
        self.release_where(lambda holder, who_ident: who_ident == ident, "its client handle closed")

    def release_where(self, match: Callable[[Holder, bytes | None], bool], why: str) -> None:
        """Release every holding and drop every wait of the holders ``match`` selects."""
        for obj in list(self.objects.values()):
            for queue in obj.queues():
                for waiter in [w for w in queue if match(w.holder, w.ident)]:
                    obj.remove(waiter)
                    waiter.resolve(exc=LockError(f"wait dropped: {why}"))
            if isinstance(obj, MutexState) and obj.holder is not None and match(obj.holder, obj.holder_ident):
                log.info("%s %r released: %s held it and %s", obj.kind, obj.name, describe_holder(obj.holder), why)
            obj.release_holders(match, why)
