"""A client's sockets and protocol state: the control connection and one connection per actor.

Shared by the synchronous client (driven from an IO thread), the asyncio client
(driven from the user's loop) and actors (driven from the actor's own loop).
"""

from __future__ import annotations

import functools
import itertools
import threading
import time
from collections.abc import Callable
from typing import Any

import zmq

from .._pages.codec import PageArrayCodec
from .._pages.objref import ObjectRef
from .._pages.registry import note_kernel
from .._wire import protocol as P
from .._wire.address import ActorAddress
from .._wire.codec import EXT_OBJREF, EXT_REF, Codec
from .._wire.limits import frame_limit, limit_inbound
from ..config import CONTROL_SOCKET, Config
from ..errors import ActorDiedError, ActorNotFound, ClosedError, ProtocolError
from .connection import READ_SLICE, Connection
from .daemon_link import DaemonLink
from .driver import LoopDriver
from .pubsub import Publisher
from .tcp import actor_route, secure_client, secure_node_client
from .tracing import tracer_for

#: Zmq messages (each possibly a batch of hundreds) queued per direction before senders feel it.
SEND_HWM = 128
RECONNECT_IVL_MS = 10
RECONNECT_IVL_MAX_MS = 200
#: Seconds a closing handle lets its goodbye reach the daemon (only if the daemon stopped reading).
GOODBYE_LINGER = 0.2

NoticeHandler = Callable[[dict], None]


class ClientCore:
    """Sockets and pending requests of one client handle.

    Args:
        config: where the daemon is, message limits.
        driver: the loop that reads replies.
        bind_ref: turns an ``ActorAddress`` decoded from a message into a ref of the caller's flavour.
        ctx: a ZeroMQ context to share (actors pass theirs); else a private one is made and owned.
    """

    def __init__(
        self,
        config: Config,
        driver: LoopDriver,
        bind_ref: Callable[[ActorAddress], Any],
        *,
        ctx: zmq.Context | None = None,
    ) -> None:
        self.config = config
        #: Call spans and trace context in headers ([tracing] enabled), else None: no cost.
        self.tracer = tracer_for(config)
        #: Root client spans of sampled calls made here, by message id, until their outcome is known.
        self.roots: dict[int, Any] = {}
        self.driver = driver
        self._own_ctx = ctx is None
        self.ctx = ctx if ctx is not None else zmq.Context()
        # Arrays and tensors: page handles through this process's pool when the daemon has one.
        self.codec = Codec(
            {EXT_REF: lambda payload: bind_ref(ActorAddress.from_wire(payload)), EXT_OBJREF: ObjectRef.from_wire},
            arrays=None if config.connect else PageArrayCodec(config.runtime_dir),  # remote: arrays inline
        )
        if not config.connect:
            note_kernel(config.runtime_dir)
        self.bind_ref = bind_ref
        self.next_id = itertools.count(1).__next__
        self.actors: dict[str, Connection] = {}
        self.notice_handlers: dict[str, list[NoticeHandler]] = {}
        #: Monitors by ref: ``down`` notices go to the one they name.
        self.monitor_handlers: dict[int, NoticeHandler] = {}
        #: Things with sockets to close before the context (subscriptions, streams).
        self.closables: set[Any] = set()
        self._publisher: Publisher | None = None
        self._lock = threading.Lock()
        self._closed = False
        self.control = self._open(config.endpoint(CONTROL_SOCKET), "daemon", "block", always_armed=True)
        self.driver.call_soon(self.control.attach)
        #: The daemon going away and coming back: fails what waited on it, re-registers on return.
        self.link = DaemonLink(self)
        self.driver.call_soon(self.link.attach)

    # ------------------------------------------------------------------ connections
    def _open(
        self, endpoint: str, peer: str, overflow: str, *, always_armed: bool = False, other_node: bool = False
    ) -> Connection:
        sock = self.ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.SNDHWM, SEND_HWM)
        sock.setsockopt(zmq.RCVHWM, 0)  # replies are bounded by our own requests
        sock.setsockopt(zmq.RECONNECT_IVL, RECONNECT_IVL_MS)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, RECONNECT_IVL_MAX_MS)
        sock.setsockopt(zmq.LINGER, 0)
        limit_inbound(sock, frame_limit(self.config.max_message_bytes))
        if other_node:
            secure_node_client(sock, self.config)
        else:
            secure_client(sock, self.config)
        # Blocking receives (a blocked caller reading its own reply) give up after one slice.
        sock.setsockopt(zmq.RCVTIMEO, max(1, int(READ_SLICE * 1000)))
        sock.connect(endpoint)
        conn = Connection(
            self.driver,
            sock,
            self.codec,
            peer=peer,
            on_notice=self._on_notice,
            overflow=overflow,
            always_armed=always_armed,
            endpoint=endpoint,
        )
        conn.max_bytes = self.config.max_message_bytes
        conn.tracer, conn.roots = self.tracer, self.roots  # (for callers that hold only the connection)
        conn.by_value = other_node  # arrays to another node travel as frames, never as page handles
        return conn

    def actor_connection(self, addr: ActorAddress) -> Connection:
        """The connection to ``addr``'s actor, opened (and watched for death) on first use."""
        conn = self.actors.get(addr.id)
        if conn is not None:
            return conn
        with self._lock:
            if self._closed:
                raise ClosedError("this client is closed")
            conn = self.actors.get(addr.id)
            if conn is None:
                label = f"actor {addr.name or addr.id}"
                endpoint, other_node = actor_route(self.config, addr)
                conn = self._open(endpoint, label, addr.overflow, other_node=other_node)
                self.actors[addr.id] = conn
                self.driver.call_soon(conn.attach)
                if not other_node:  # (this daemon knows nothing of another node's actors)
                    # Ask the daemon to tell us if it dies (or if it is already gone).
                    self.tell_daemon("watch", addr.id)
        return conn

    def publisher(self) -> Publisher:
        """This handle's PUB socket (created on first publish)."""
        pub = self._publisher
        if pub is None:
            with self._lock:
                if self._closed:
                    raise ClosedError("this client is closed")
                if self._publisher is None:
                    self._publisher = Publisher(self.driver, self.ctx, self.config, self.codec)
                pub = self._publisher
        return pub

    # ------------------------------------------------------------------ encoding
    def encode(
        self,
        kind: str,
        method: str,
        args: tuple | list,
        kwargs: dict,
        *,
        timeout: float | None = None,
        prio: int | None = None,
        extra: dict | None = None,
        traced: bool = True,
        by_value: bool = False,
    ) -> tuple[int, bytes, bytes, list, float | None]:
        """Pack a request. Returns ``(id, header, body, buffers, deadline)``.

        With tracing on, ``traced`` requests carry the trace context (and may start a trace).

        Raises:
            TypeError: an argument cannot travel (the message says which type).
            ProtocolError: the message exceeds ``max_message_bytes``.
        """
        body, bufs = self.codec.pack([args, kwargs], by_value=by_value)
        size = len(body) + sum(memoryview(b).nbytes for b in bufs) if bufs else len(body)
        if size > self.config.max_message_bytes:
            raise ProtocolError(
                f"message of {size} bytes exceeds max_message_bytes={self.config.max_message_bytes}; "
                "send large arrays as pool-backed tensors or object refs"
            )
        msg_id = self.next_id()
        deadline = None if timeout is None else time.monotonic() + timeout
        if self.tracer is not None and traced:
            extra = self.tracer.outgoing(method, extra, msg_id, self.roots if kind == P.CALL else None)
        head = P.request_header(kind, msg_id, method, prio, deadline, extra)
        return msg_id, head, body, bufs, deadline

    def end_root(self, msg_id: int, error: BaseException | None = None) -> None:
        """If call ``msg_id`` started a sampled trace, end its root span now, with the call's outcome."""
        span = self.roots.pop(msg_id, None)
        if span is not None:
            self.tracer.end(span, error)  # type: ignore[union-attr]

    def end_root_with(self, msg_id: int, fut: Any) -> None:
        """If call ``msg_id`` started a sampled trace, end its root span when ``fut`` settles."""
        span = self.roots.pop(msg_id, None)
        if span is not None:
            fut.add_done_callback(functools.partial(self.tracer.end_with, span))  # type: ignore[union-attr]

    def tell_daemon(self, method: str, *args: Any, **kwargs: Any) -> None:
        """One-way message to the daemon (watch, heartbeat, ...)."""
        _, head, body, bufs, _ = self.encode(P.TELL, method, args, kwargs, traced=False)
        self.control.send_now(None, head, body, bufs)

    # ------------------------------------------------------------------ notices
    def on_notice(self, event: str, handler: NoticeHandler) -> None:
        """Register ``handler(body)`` for daemon notices of type ``event``."""
        self.notice_handlers.setdefault(event, []).append(handler)

    def _on_notice(self, conn: Connection, head: dict, body: Any) -> None:
        if type(body) is not dict or "event" not in body:
            raise ProtocolError(f"malformed notice: {body!r:.200}")
        event = body["event"]
        if event in ("exited", "unknown"):
            actor = self.actors.get(body.get("actor", ""))
            if actor is not None:
                restarting = bool(body.get("restarting"))
                actor.fail_all(self.death_error(body), restarting=restarting)
                if not restarting:  # gone for good: free its socket (a later use opens a new one)
                    self.actors.pop(body.get("actor", ""), None)
                    actor.retire()
        elif event == "restarted":
            actor = self.actors.get(body.get("actor", ""))
            if actor is not None:
                actor.revive()
        elif event == "down":
            handler = self.monitor_handlers.get(body.get("ref"))  # type: ignore[arg-type]
            if handler is not None:
                if not body.get("restarting"):
                    self.monitor_handlers.pop(body.get("ref"), None)  # type: ignore[arg-type]
                handler(body)
        for handler in self.notice_handlers.get(event, ()):
            handler(body)

    @staticmethod
    def death_error(body: dict) -> Exception:
        """The exception callers of a dead (or never known) actor get."""
        name = body.get("name") or body.get("actor", "?")
        if body["event"] == "unknown":
            return ActorNotFound(f"no actor {name!r} is known to the daemon")
        exitcode, signum = body.get("exitcode"), body.get("signal")
        how = f"killed by signal {signum}" if signum else f"exited with code {exitcode}"
        reason = body.get("reason") or ""
        restarting = bool(body.get("restarting"))
        message = f"actor {name!r} died ({how})" + (f": {reason}" if reason else "")
        if restarting:
            message += " [restarting]"
        return ActorDiedError(
            message, exitcode=exitcode, signal=signum, reason=reason, actor=name, restarting=restarting
        )

    # ------------------------------------------------------------------ shutdown
    def close(self) -> None:
        """Close every socket (call on the loop thread). Pending requests fail with ClosedError."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            conns = list(self.actors.values())
            self.actors.clear()
        for thing in list(self.closables):
            thing.close()
        if self._publisher is not None:
            self._publisher.close()
        for conn in conns:
            conn.close()
        self.link.close()
        linger = 0.0
        if self.control.dead is None:
            try:  # the daemon releases what this handle held (sync objects) and drops its monitors
                self.tell_daemon("goodbye")
                linger = GOODBYE_LINGER
            except Exception:
                pass
        self.control.close(linger=linger)
        self.codec.close()
        if self._own_ctx:
            self.ctx.term()
