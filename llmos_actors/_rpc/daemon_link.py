"""A client's view of its daemon going away and coming back (a crash, ``systemctl restart``).

ZeroMQ reconnects the control socket by itself (every 10 ms, backing off to 200 ms); a
socket monitor tells us when the connection drops and when it is made again:

- dropped: requests waiting on the daemon fail with ``DaemonUnavailable``, calls in flight
  to actors fail with ``ActorDiedError`` (actors die with their daemon). Requests and calls
  made meanwhile wait for the daemon (and their actor) to be back, within the retry budget
  ``reconnect_timeout`` seconds from the loss (``[client]`` section, default
  ``connect_timeout`` x 6); once it is spent, they all fail with ``DaemonUnavailable``, and
  so does every later one at once (not at its own deadline) until the daemon is back;
- made again: the actors this handle talks to are watched again (the daemon answers for
  those it did not bring back), its monitors and subscriptions registered again (the new
  daemon knows nothing of them), and the log says so.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

import zmq
from zmq.utils.monitor import parse_monitor_message

from .._wire import protocol as P
from ..errors import ActorDiedError, DaemonUnavailable

log = logging.getLogger("llmos_actors.client")

_EVENTS = zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED


def reconnect_timeout(config: Any) -> float:
    section = dict((config.extra or {}).get("client") or {})
    value = section.get("reconnect_timeout", config.connect_timeout * 6)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError("[client] reconnect_timeout must be a number of seconds >= 0")
    return float(value)


class DaemonLink:
    """Watches one ``ClientCore``'s control connection (see the module docstring)."""

    def __init__(self, core: Any) -> None:
        self.core = core
        self.lost = False
        self.lost_at = 0.0
        self.reconnects = 0
        self.timeout = reconnect_timeout(core.config)
        #: Monitors to register again: ref -> target.
        self.monitors: dict[int, str] = {}
        self._back = threading.Condition(threading.Lock())
        self._callbacks: list[Any] = []
        self._mon: zmq.Socket | None = None
        self._fd = -1
        self._give_up_timer: asyncio.TimerHandle | None = None

    def attach(self) -> None:
        """Start watching (on the loop thread)."""
        control = self.core.control
        with control.lock:
            if control._closed:
                return
            self._mon = control.sock.get_monitor_socket(_EVENTS)
        self._fd = int(self._mon.getsockopt(zmq.FD))  # type: ignore[arg-type]
        self.core.driver.loop.add_reader(self._fd, self._read)
        self._read()

    def close(self) -> None:
        """Stop watching (on the loop thread, before the control socket closes)."""
        mon, self._mon = self._mon, None
        if mon is None:
            return
        try:
            self.core.driver.loop.remove_reader(self._fd)
        except (ValueError, RuntimeError):
            pass
        try:
            self.core.control.sock.disable_monitor()
        except zmq.ZMQError:
            pass
        mon.close(linger=0)
        self._cancel_give_up()
        self._wake()

    def _read(self) -> None:
        mon = self._mon
        while mon is not None:
            try:
                frames = mon.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            except zmq.ZMQError:
                return
            event = parse_monitor_message(frames)["event"]
            if event == zmq.EVENT_DISCONNECTED and not self.lost:
                self._lost()
            elif event == zmq.EVENT_CONNECTED and self.lost:
                self._returned()

    def _lost(self) -> None:
        self.lost = True
        self.lost_at = time.monotonic()
        core = self.core
        rd = core.config.runtime_dir
        log.warning("lost the daemon at %s; reconnecting (requests wait up to %g s for it)", rd, self.timeout)
        core.control.fail_all(DaemonUnavailable(f"the daemon at {rd} went away"), dead=False)
        down = DaemonUnavailable(f"the daemon at {rd} is down, and its actors with it")
        for actor_id, conn in list(core.actors.items()):
            conn.fail_all(
                ActorDiedError(f"actor {conn.peer!r} died with its daemon", actor=actor_id, restarting=True),
                dead=False,
            )
            # Held until the daemon says the actor is back: what is sent meanwhile fails at once, or
            # waits for it with the ``wait_restart`` option (within the retry budget).
            if conn.dead is None:
                conn.fail_all(down, restarting=True)
        self._give_up_timer = core.driver.loop.call_later(self.timeout, self._give_up)

    def _give_up(self) -> None:
        """The retry budget is spent: whatever still waits for the daemon fails now."""
        self._give_up_timer = None
        if not self.lost:
            return
        exc = self._gone()
        log.warning("%s", exc)
        self.core.control.fail_all(exc, dead=False)
        for conn in list(self.core.actors.values()):
            if isinstance(conn.dead, DaemonUnavailable):
                conn.fail_all(exc)  # not restarting: callers waiting for it stop waiting
        self._wake()

    def _cancel_give_up(self) -> None:
        if self._give_up_timer is not None:
            self._give_up_timer.cancel()
            self._give_up_timer = None

    def _returned(self) -> None:
        self.lost = False
        self.reconnects += 1
        self._cancel_give_up()
        core = self.core
        actors = list(core.actors)
        for actor_id in actors:
            # A request, not a tell: its reply comes once the daemon has recovered, after the
            # notice it sends if that actor is not back; without one, the actor is back.
            msg_id, head, body, bufs, _ = core.encode(P.CALL, "watch", (actor_id,), {})
            core.control.request(msg_id, head, body, bufs, _Rewatched(self, actor_id))
        for ref, target in list(self.monitors.items()):
            if ref in core.monitor_handlers:
                core.tell_daemon("monitor", target, ref)
            else:
                self.monitors.pop(ref, None)
        subs = [thing for thing in list(core.closables) if hasattr(thing, "daemon_back")]
        for thing in subs:
            thing.daemon_back()
        log.warning(
            "reconnected to the daemon at %s: watching %d actor(s) again, %d monitor(s), %d subscription(s)",
            core.config.runtime_dir,
            len(actors),
            len(self.monitors),
            len(subs),
        )
        self._wake()

    def rewatched(self, actor_id: str) -> None:
        """The daemon answered the watch of ``actor_id`` (on the loop thread)."""
        conn = self.core.actors.get(actor_id)
        if conn is not None and isinstance(conn.dead, DaemonUnavailable) and not self.lost:
            conn.revive()

    def _wake(self) -> None:
        with self._back:
            self._back.notify_all()
            callbacks = list(self._callbacks)
        for callback in callbacks:
            callback()

    def _gone(self) -> DaemonUnavailable:
        return DaemonUnavailable(
            f"the daemon at {self.core.config.runtime_dir} is not back after {self.timeout:g} s (reconnect_timeout)"
        )

    def wait_back(self) -> None:
        """Before a request: if the daemon went away, wait (bounded) for it to return.

        Raises:
            DaemonUnavailable: it did not come back within ``reconnect_timeout``.
        """
        if not self.lost:
            return
        deadline = self.lost_at + self.timeout
        with self._back:
            while self.lost and self._mon is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise self._gone()
                self._back.wait(left)

    async def wait_back_async(self) -> None:
        """``wait_back`` for coroutines."""
        if not self.lost:
            return
        loop = asyncio.get_running_loop()
        fut = loop.create_future()

        def settle() -> None:
            if not fut.done():
                fut.set_result(None)

        def wake() -> None:
            loop.call_soon_threadsafe(settle)

        with self._back:
            self._callbacks.append(wake)
        try:
            if self.lost and self._mon is not None:
                await asyncio.wait_for(fut, max(0.0, self.lost_at + self.timeout - time.monotonic()))
        except asyncio.TimeoutError:
            raise self._gone() from None
        finally:
            with self._back:
                self._callbacks.remove(wake)
        if self.lost:  # woken by the end of the budget, not by the daemon's return
            raise self._gone()


class _Rewatched:
    """Waits for the reply to a watch sent on reconnect (whoever reads it: hop to the loop)."""

    __slots__ = ("actor_id", "link")
    streaming = False

    def __init__(self, link: DaemonLink, actor_id: str) -> None:
        self.link = link
        self.actor_id = actor_id

    def resolve(self, ok: bool, value: Any) -> None:
        loop = self.link.core.driver.loop
        try:
            loop.call_soon_threadsafe(self.link.rewatched, self.actor_id)
        except RuntimeError:  # the loop closed with the handle
            pass
