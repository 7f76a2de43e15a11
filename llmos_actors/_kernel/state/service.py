"""The state service: records what the daemon should bring back, and brings it back at start.

It wraps the control handlers that change the desired state (spawn, kill, supervisors,
pools, sync objects), so that each change is committed to the journal before its reply
leaves; it hooks actor exits (an actor gone for good leaves the journal, except while the
daemon itself is stopping) and detached objects; and once the control socket serves, it
replays the journal (see ``recovery``).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable
from typing import Any

from ..._rpc.server import Request
from ...errors import ProtocolError, SnapshotError
from ..proctable import EXITED, ActorRecord
from ..restart_policy import LIMIT_KEYS
from ..service import Service
from . import journal as J
from .objects import DurableObjects
from .recovery import recover
from .settings import OBJECT_DIR, SNAPSHOT_DIR, state_settings
from .snapshots import SnapshotStore
from .snapshotting import Snapshotter, check_snapshot_every

log = logging.getLogger(__name__)

#: Policies of actors that should live: recorded in the journal and brought back.
DURABLE = ("permanent", "transient")
#: Requests about actors by id or name that wait for recovery (a reconnecting client re-watches at once).
AFTER_RECOVERY = ("watch", "monitor", "link", "lookup")
#: Subscriptions (``actor_subscribe``) an actor keeps across restarts.
MAX_SUBSCRIPTIONS = 256
#: Sync handlers after which a new object's definition may exist.
SYNC_HANDLERS = ("sync_acquire", "cond_wait", "barrier_wait", "event_set", "event_clear", "event_wait")
#: Set while a client's ``spawn`` runs: its record is journalled then (recovery's and pools' spawns are not).
_SPAWNING: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("llmos_state_spawning")


class StateService(Service):
    """Journal, recovery and snapshots (see the package docstring)."""

    name = "state"

    def __init__(self, daemon: Any) -> None:
        self.daemon = daemon
        self.settings = state_settings(daemon.config.extra)
        self.journal: J.Journal | None = getattr(daemon, "journal", None)
        self.journaled: set[str] = set()  # actor ids with a journal row
        self.problems: dict[str, str] = {}  # actor id -> why it was not recovered
        self.notes: dict[str, str] = {}  # actor id -> last snapshot failure
        self.sync_defs: dict[str, tuple[str, dict]] = {}
        self.objects: DurableObjects | None = None
        self.recovery: dict = {}
        self.recovered = asyncio.Event()
        state_dir = daemon.config.state_dir
        self.snapshots = Snapshotter(
            self, SnapshotStore(state_dir / SNAPSHOT_DIR, self.settings.snapshot_keep), self.settings.snapshot_timeout
        )
        self._task: asyncio.Task | None = None

    # ------------------------------------------------------------------ service
    def handlers(self) -> dict[str, Callable[..., Any]]:
        return {
            "snapshot": self.h_snapshot,
            "actor_snapshot": self.h_actor_snapshot,
            "actor_subscribed": self.h_actor_subscribed,
            "state_info": self.h_info,
        }

    async def start(self) -> None:
        d = self.daemon
        self.snapshots.start(d.loop)
        self._wrap("spawn", self._spawn)
        self._wrap("kill", self._kill)
        self._wrap("grant", self._grant)
        self._wrap("ps", self._ps)
        if self.journal is None:
            self.recovered.set()
            return
        for name in AFTER_RECOVERY:
            self._wrap(name, self._after_recovery)
        self._wrap("supervisor_new", self._supervisor_new)
        self._wrap("supervisor_stop", self._supervisor_stop)
        self._wrap("pool_create", self._pool_create)
        self._wrap("pool_stop", self._pool_stop)
        for name in SYNC_HANDLERS:
            self._wrap(name, self._sync_changed)
        self._wrap("sync_delete", self._sync_changed)
        store = getattr(getattr(d, "pages", None), "store", None)
        if store is not None:
            self.objects = DurableObjects(d.config.state_dir / OBJECT_DIR, self.journal, store)
        self.sync_defs = {
            row["name"]: (row["kind"], J.jsonable.loads(row["params"])) for row in self.journal.rows("sync_objects")
        }
        # The control socket starts serving after every service started: recover from then on.
        self._task = d.loop.create_task(self._recover())

    async def _recover(self) -> None:
        try:
            self.recovery = await recover(self)
        except Exception:
            log.exception("recovery failed")
        finally:
            self.recovered.set()

    async def stop(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.snapshots.stop()
        if self.journal is not None:
            self.journal.close()

    def status(self) -> dict:
        out: dict[str, Any] = {
            "journal": str(self.journal.path) if self.journal is not None else None,
            "snapshots_taken": self.snapshots.taken,
            "snapshots_failed": self.snapshots.failed,
        }
        if self.journal is not None:
            out.update(commits=self.journal.commits, ops=self.journal.ops, recovery=self.recovery)
            out["recovering"] = not self.recovered.is_set()
            if self.journal.migrated_from:
                out["migrated_from_schema"] = self.journal.migrated_from
        return out

    # ------------------------------------------------------------------ wrapping
    def _wrap(self, name: str, wrapper: Callable[..., Any]) -> None:
        handlers = self.daemon.control.handlers
        inner = handlers.get(name)
        if inner is None:
            return

        wait = name != "ps"  # the rest could clash with what recovery brings back (names, ids)

        async def handler(req: Request, *args: Any, **kwargs: Any) -> Any:
            if wait and not self.recovered.is_set():
                await self.recovered.wait()
            return await wrapper(inner, req, *args, **kwargs)

        handlers[name] = handler

    async def _after_recovery(self, inner: Callable[..., Any], req: Request, *a: Any, **kw: Any) -> Any:
        return await self._call(inner, req, *a, **kw)  # _wrap waited for recovery

    @staticmethod
    async def _call(inner: Callable[..., Any], req: Request, *args: Any, **kwargs: Any) -> Any:
        result = inner(req, *args, **kwargs)
        if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
            result = await result
        return result

    async def _write(self, *ops: Any) -> None:
        if self.journal is not None:
            await self.journal.submit(*ops)

    # ------------------------------------------------------------------ actors
    async def _spawn(self, inner: Callable[..., Any], req: Request, request: Any = None, *a: Any, **kw: Any) -> Any:
        if isinstance(request, dict):
            request.pop("snapshot", None)  # the daemon's to set, never a client's
            request.pop("subscriptions", None)
            check_snapshot_every(request.get("snapshot_every"))
        pending: dict[str, Any] = {}  # on_new_record fills it in: the record and its journal write
        token = _SPAWNING.set(pending)
        try:
            return await self._call(inner, req, request, *a, **kw)
        except BaseException:
            record = pending.get("record")
            if record is not None and not record.live and record.id in self.journaled:
                self._forget(record)  # refused before it forked: no exit hook drops it
            raise
        finally:
            _SPAWNING.reset(token)
            written = pending.get("written")
            if written is not None:
                await written  # acknowledged only once its row is on disk (it was written during the fork)

    def on_new_record(self, record: ActorRecord) -> None:
        """A client's spawn of an actor that should live: its row is committed while it forks."""
        pending = _SPAWNING.get(None)
        if pending is None or self.journal is None or record.restart not in DURABLE:
            return
        self.journaled.add(record.id)
        pending["record"] = record
        pending["written"] = self.journal.submit(
            J.put_actor(record.id, self.journal.next_seq(), record.name, _spec(record))
        )

    async def _kill(self, inner: Callable[..., Any], req: Request, target: Any = None, *a: Any, **kw: Any) -> Any:
        result = await self._call(inner, req, target, *a, **kw)
        record = self.daemon.table.by_name.get(target) or self.daemon.table.by_id.get(target)
        if record is not None and record.state == EXITED and record.id in self.problems:
            self._forget(record)  # it never came back; killing it forgets it
        await self._write()  # its exit hook's delete is on disk before the reply
        return result

    async def _grant(self, inner: Callable[..., Any], req: Request, target: Any = None, *a: Any, **kw: Any) -> Any:
        result = await self._call(inner, req, target, *a, **kw)
        record = self.daemon.table.find(target)
        if record.id in self.journaled:
            await self._write(J.actor_spec(record.id, _spec(record)))  # grants outlive the daemon too
        return result

    def _stopping(self) -> bool:
        stop = getattr(self.daemon, "_stop", None)
        return stop is not None and stop.is_set()

    def on_actor_exit(self, record: ActorRecord) -> None:
        if record.state != EXITED or self._stopping() or record.id in self.problems:
            return
        self._forget(record)

    def _forget(self, record: ActorRecord) -> None:
        self.snapshots.forget(record.id)
        self.problems.pop(record.id, None)
        self.notes.pop(record.id, None)
        if record.id not in self.journaled:
            self.snapshots.store.drop(record.id)
            return
        self.journaled.discard(record.id)
        self.snapshots.store.drop(record.id)
        if self.journal is not None:
            fut = self.journal.submit(*J.drop_actor(record.id))
            fut.add_done_callback(lambda f: f.exception())

    async def _ps(self, inner: Callable[..., Any], req: Request, *a: Any, **kw: Any) -> Any:
        rows = await self._call(inner, req, *a, **kw)
        for row in rows:
            why = self.problems.get(row.get("id")) or self.notes.get(row.get("id"))
            if why:
                row["note"] = f"{row['note']}; {why}" if row.get("note") else why
        return rows

    # ------------------------------------------------------------------ supervisors and pools
    async def _supervisor_new(self, inner: Callable[..., Any], req: Request, *a: Any, **kw: Any) -> Any:
        node = await self._call(inner, req, *a, **kw)
        spec = {
            "strategy": node["strategy"],
            "restart": node["restart"],
            "parent": node["parent"],
            "limits": {k: node[k] for k in LIMIT_KEYS if k in node},
        }
        await self._write(J.put_supervisor(node["id"], self.journal.next_seq(), node["name"], spec))  # type: ignore[union-attr]
        return node

    async def _supervisor_stop(
        self, inner: Callable[..., Any], req: Request, target: Any = None, *a: Any, **kw: Any
    ) -> Any:
        sup = self.daemon.supervision
        under = [n.id for n in sup._nodes_under(sup.node(target))]
        result = await self._call(inner, req, target, *a, **kw)
        await self._write(*(J.drop_supervisor(node_id) for node_id in under))
        return result

    async def _pool_create(
        self, inner: Callable[..., Any], req: Request, request: Any = None, *a: Any, **kw: Any
    ) -> Any:
        reply = await self._call(inner, req, request, *a, **kw)
        pool = self.daemon.scheduler.pools.by_name.get(reply["name"])
        spec = {**request, "name": reply["name"], "dispatcher_id": pool.dispatcher.id if pool else ""}
        await self._write(J.put_pool(reply["name"], self.journal.next_seq(), spec))  # type: ignore[union-attr]
        return reply

    async def _pool_stop(self, inner: Callable[..., Any], req: Request, name: Any = None, *a: Any, **kw: Any) -> Any:
        result = await self._call(inner, req, name, *a, **kw)
        await self._write(J.drop_pool(name))
        return result

    # ------------------------------------------------------------------ sync objects
    async def _sync_changed(self, inner: Callable[..., Any], req: Request, *a: Any, **kw: Any) -> Any:
        result = inner(req, *a, **kw)
        ops = self._sync_ops()
        if ops:
            await self._write(*ops)
        if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
            result = await result
            ops = self._sync_ops()  # sync_delete and friends may be coroutines
            if ops:
                await self._write(*ops)
        return result

    def _sync_ops(self) -> list:
        objects = self.daemon.sync.objects
        ops = []
        for name, obj in objects.items():
            if name not in self.sync_defs:
                params = {k: getattr(obj, k) for k in ("n", "parties") if hasattr(obj, k)}
                self.sync_defs[name] = (obj.kind, params)
                ops.append(J.put_sync(name, obj.kind, params))
        for name in [n for n in self.sync_defs if n not in objects]:
            del self.sync_defs[name]
            ops.append(J.drop_sync(name))
        return ops

    def restore_sync_objects(self) -> int:
        sync = self.daemon.sync
        n = 0
        for name, (kind, params) in self.sync_defs.items():
            try:
                sync._get(kind, name, params)
                n += 1
            except Exception as exc:
                log.warning("sync object %s not recovered: %s", name, exc)
        return n

    # ------------------------------------------------------------------ snapshots
    async def h_snapshot(self, req: Request, target: Any, timeout: Any = None) -> dict:
        if not isinstance(target, str) or not target:
            raise ProtocolError("snapshot takes an actor name or id")
        if timeout is not None and (not isinstance(timeout, (int, float)) or timeout <= 0):
            raise ProtocolError("timeout must be a number of seconds > 0")
        return await self.snapshots.take(self.daemon.table.find(target), timeout)

    async def h_actor_snapshot(self, req: Request, actor_id: Any, token: Any, data: Any, error: Any = None) -> dict:
        """From an actor: its snapshot (or why it failed). Only the actor itself may send it."""
        record = self.daemon.table.by_id.get(actor_id) if isinstance(actor_id, str) else None
        if record is None or record.control_ident != req.ident:
            raise ProtocolError("actor_snapshot comes from the actor itself")
        if not isinstance(token, int):
            raise ProtocolError("token must be an int")
        if error is not None and not isinstance(error, str):
            raise ProtocolError("error must be a string")
        if error is not None:
            await self.snapshots.received(record, token, None, error)
            return {}
        if not isinstance(data, bytes):
            raise SnapshotError("a snapshot is packed bytes")
        return await self.snapshots.received(record, token, data, None)

    async def h_actor_subscribed(self, req: Request, actor_id: Any, prefix: Any, method: Any) -> None:
        """From an actor: it subscribed ``method`` to ``prefix`` (``actor_subscribe``); its next
        incarnations (after a restart of it or of the daemon) subscribe again at start."""
        record = self.daemon.table.by_id.get(actor_id) if isinstance(actor_id, str) else None
        if record is None or record.control_ident != req.ident:
            raise ProtocolError("actor_subscribed comes from the actor itself")
        if not (isinstance(prefix, str) and isinstance(method, str) and len(prefix) <= 256 and len(method) <= 128):
            raise ProtocolError("actor_subscribed takes a topic prefix and a method name")
        subs = record.request.setdefault("subscriptions", [])
        if [prefix, method] in subs:
            return
        if len(subs) >= MAX_SUBSCRIPTIONS:
            raise ProtocolError(f"an actor keeps at most {MAX_SUBSCRIPTIONS} subscriptions across restarts")
        subs.append([prefix, method])
        if record.id in self.journaled:
            await self._write(J.actor_spec(record.id, _spec(record)))

    def h_info(self, req: Request) -> dict:
        return self.status()


def _spec(record: Any) -> dict:
    """What the journal keeps of an actor: its request (less the snapshot file) and its owner,
    which only the daemon sets (recovery gives it back; a client's spawn request cannot)."""
    spec = {k: v for k, v in record.request.items() if k != "snapshot"}
    spec["owner"] = record.owner
    return spec
