"""Taking actors' snapshots: on request, every ``snapshot_every`` seconds, and at a graceful stop.

The daemon asks an actor with a ``snapshot`` notice on the actor's control connection; the
actor runs ``on_snapshot()`` between its calls and sends the packed value back with
``actor_snapshot`` (an actor that stops gracefully sends one unasked). A value is stored
as a file and entered in the journal before the request is answered; a failure is
reported to the caller and noted on the actor, and the previous snapshot stays.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from typing import Any

from ...errors import LlmosError, ProtocolError, SnapshotError
from ..proctable import RUNNING, ActorRecord
from . import journal as J
from .snapshots import SnapshotStore

log = logging.getLogger(__name__)


class Snapshotter:
    """Requests, receives and stores snapshots for the state service."""

    def __init__(self, state: Any, store: SnapshotStore, timeout: float) -> None:
        self.state = state
        self.store = store
        self.timeout = timeout
        self._tokens = itertools.count(1)
        self._waiting: dict[int, tuple[str, asyncio.Future]] = {}
        self._due: dict[str, float] = {}  # actor id -> monotonic time of its next periodic snapshot
        self.taken = 0
        self.failed = 0
        self._task: asyncio.Task | None = None

    # ------------------------------------------------------------------ requests
    async def take(self, record: ActorRecord, timeout: float | None = None) -> dict:
        """Ask ``record``'s actor for a snapshot and store it; returns what was stored.

        Raises:
            SnapshotError: the actor is not running, has no ``on_snapshot``, or it failed.
        """
        if record.state != RUNNING or record.control_ident is None:
            raise SnapshotError(f"actor {record.label!r} is {record.state}: no snapshot")
        token = next(self._tokens)
        fut = asyncio.get_running_loop().create_future()
        self._waiting[token] = (record.id, fut)
        self.state.daemon.server.notify(record.control_ident, {"event": "snapshot", "token": token})
        try:
            return await asyncio.wait_for(fut, timeout or self.timeout)
        except asyncio.TimeoutError:
            self._note_failure(record, f"no answer within {timeout or self.timeout:g} s")
            raise SnapshotError(f"actor {record.label!r} did not answer the snapshot request in time") from None
        finally:
            self._waiting.pop(token, None)

    async def received(self, record: ActorRecord, token: int, data: Any, error: Any) -> dict:
        """An actor's answer to request ``token``; 0: unasked (a graceful stop), -1: its restore failed."""
        waiting = self._waiting.pop(token, None) if token > 0 else None
        fut = waiting[1] if waiting is not None and waiting[0] == record.id else None
        try:
            if error is not None or not isinstance(data, bytes):
                raise SnapshotError(str(error or "no value"))
            info = await self._store(record, data)
        except Exception as exc:
            why = str(exc) if isinstance(exc, SnapshotError) else f"storing it failed: {exc}"
            if token < 0:
                self.state.notes[record.id] = why
                log.warning("actor %s: %s", record.label, why)
            else:
                self._note_failure(record, why)
            if fut is not None and not fut.done():
                fut.set_exception(SnapshotError(f"actor {record.label!r}: snapshot failed: {why}"))
            return {}
        if fut is not None and not fut.done():
            fut.set_result(info)
        return info

    async def _store(self, record: ActorRecord, data: bytes) -> dict:
        loop = asyncio.get_running_loop()
        path = await loop.run_in_executor(None, self.store.write, record.id, data)
        taken = time.time()
        if self.state.journal is not None and record.id in self.state.journaled:
            await self.state.journal.submit(J.put_snapshot(record.id, str(path), taken, len(data)))
        record.request["snapshot"] = str(path)  # its next incarnation restores from it
        self.state.notes.pop(record.id, None)
        self.taken += 1
        return {"actor": record.id, "name": record.name, "file": str(path), "size": len(data), "taken": taken}

    def _note_failure(self, record: ActorRecord, why: str) -> None:
        self.failed += 1
        self.state.notes[record.id] = f"snapshot failed: {why}"
        log.warning("actor %s: snapshot failed: %s", record.label, why)

    # ------------------------------------------------------------------ periodic
    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._task = loop.create_task(self._periodic())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for _, fut in self._waiting.values():
            if not fut.done():
                fut.set_exception(SnapshotError("the daemon is stopping"))

    async def _periodic(self) -> None:
        while True:
            await asyncio.sleep(0.25)
            now = time.monotonic()
            for record in list(self.state.daemon.table.by_id.values()):
                every = record.request.get("snapshot_every")
                if not every or record.state != RUNNING:
                    continue
                due = self._due.setdefault(record.id, now + every)
                if now >= due:
                    self._due[record.id] = now + every
                    asyncio.get_running_loop().create_task(self._quietly(record))

    async def _quietly(self, record: ActorRecord) -> None:
        try:
            await self.take(record)
        except LlmosError:
            pass  # noted on the actor and logged

    def forget(self, actor_id: str) -> None:
        self._due.pop(actor_id, None)


def check_snapshot_every(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.1 <= value <= 86400 * 7:
        raise ProtocolError("snapshot_every must be a number of seconds in 0.1..604800")
    return float(value)
