"""A client's view of its daemon going away and coming back (a crash, ``systemctl restart``).

ZeroMQ reconnects the control socket by itself (every 10 ms, backing off to 200 ms); a
socket monitor tells us when the connection drops and when it is made again:

- dropped: requests waiting on the daemon fail with ``DaemonUnavailable``, calls in flight
  to actors fail with ``ActorDiedError`` (actors die with their daemon); later calls wait for
  the daemon to be back, for at most ``reconnect_timeout`` seconds (``[client]`` section,
  default ``connect_timeout`` x 6), then fail with ``DaemonUnavailable``;
- made again: the actors this handle talks to are watched again, its monitors and
  subscriptions registered again (the new daemon knows nothing of them), and the log says so.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

import zmq
from zmq.utils.monitor import parse_monitor_message

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
        self.reconnects = 0
        self.timeout = reconnect_timeout(core.config)
        #: Monitors to register again: ref -> target.
        self.monitors: dict[int, str] = {}
        self._back = threading.Condition(threading.Lock())
        self._callbacks: list[Any] = []
        self._mon: zmq.Socket | None = None
        self._fd = -1

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
        rd = self.core.config.runtime_dir
        log.warning("lost the daemon at %s; reconnecting (calls wait up to %g s for it)", rd, self.timeout)
        self.core.control.fail_all(DaemonUnavailable(f"the daemon at {rd} went away"), dead=False)
        for actor_id, conn in list(self.core.actors.items()):
            conn.fail_all(
                ActorDiedError(f"actor {conn.peer!r} died with its daemon", actor=actor_id, restarting=True),
                dead=False,
            )

    def _returned(self) -> None:
        self.lost = False
        self.reconnects += 1
        core = self.core
        actors = list(core.actors)
        for actor_id in actors:
            core.tell_daemon("watch", actor_id)
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
        deadline = time.monotonic() + self.timeout
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

        def wake() -> None:
            loop.call_soon_threadsafe(lambda: fut.done() or fut.set_result(None))

        with self._back:
            self._callbacks.append(wake)
        try:
            if self.lost and self._mon is not None:
                await asyncio.wait_for(fut, self.timeout)
        except asyncio.TimeoutError:
            raise self._gone() from None
        finally:
            with self._back:
                self._callbacks.remove(wake)
