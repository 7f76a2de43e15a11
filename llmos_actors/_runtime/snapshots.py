"""An actor's side of snapshots: ``on_snapshot()`` when the daemon asks (or at a graceful stop),
``on_restore(value)`` with the latest snapshot when a new incarnation starts.

Values are packed inline (tensors and arrays included, their bytes in the body), so a
snapshot does not depend on shared-memory pages that die with the daemon.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger("llmos_actors.actor")


async def _result(value: Any) -> Any:
    return await value if asyncio.iscoroutine(value) else value


class ActorSnapshots:
    """Takes and restores one actor's snapshots (``runtime``: the ``ActorRuntime``)."""

    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime
        self.restore_error = ""
        self._tasks: set[asyncio.Task] = set()

    async def restore(self, instance: Any, codec: Any) -> None:
        """Before ``on_start``: hand the latest snapshot to ``on_restore`` (a failure is noted, not fatal)."""
        path = self.runtime.spec.get("snapshot")
        hook = getattr(instance, "on_restore", None)
        if not path or not callable(hook):
            return
        try:
            value = codec.unpack(Path(path).read_bytes())
            await _result(hook(value))
            log.info("restored from snapshot %s", path)
        except Exception as exc:
            self.restore_error = f"restore from {path} failed: {type(exc).__name__}: {exc}"
            log.exception("on_restore failed (the actor starts without its snapshot)")

    def subscriptions(self) -> list[tuple[str, str]]:
        """Subscriptions made with ``actor_subscribe`` by earlier incarnations (the daemon kept them)."""
        found = self.runtime.spec.get("subscriptions") or []
        return [(p, m) for p, m in found if isinstance(p, str) and isinstance(m, str)]

    def listen(self) -> None:
        """Take snapshots the daemon asks for (a ``snapshot`` notice on the control connection)."""
        self.runtime.core.on_notice("snapshot", self._on_request)

    async def report_restore(self) -> None:
        if self.restore_error:
            await self._send(-1, None, self.restore_error)

    def _on_request(self, body: dict) -> None:
        task = asyncio.get_running_loop().create_task(self.take(int(body.get("token") or 0)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def take(self, token: int) -> None:
        """Run ``on_snapshot`` and send the value (or why it failed) to the daemon."""
        instance = self.runtime.instance
        hook = getattr(instance, "on_snapshot", None)
        if not callable(hook):
            await self._send(token, None, f"{type(instance).__name__} defines no on_snapshot()")
            return
        try:
            value = await _result(hook())
            data, _ = self.runtime.core.codec.pack(value, inline=True)
        except Exception as exc:
            log.exception("on_snapshot failed")
            await self._send(token, None, f"{type(exc).__name__}: {exc}")
            return
        await self._send(token, data, None)

    async def at_stop(self) -> None:
        """A graceful stop: one last snapshot, if the actor takes them."""
        if callable(getattr(self.runtime.instance, "on_snapshot", None)):
            await self.take(0)

    async def _send(self, token: int, data: bytes | None, error: str | None) -> None:
        rt = self.runtime
        try:
            await rt.kernel_async()._control("actor_snapshot", rt.actor_id, token, data, error, timeout=30.0)
        except Exception as exc:
            log.warning("the daemon did not take the snapshot: %s", exc)
