"""Actor refs: plain data (an ``ActorAddress``) bound to the kernel handle that uses them.

``ActorRef`` is the synchronous flavour (``call`` blocks), ``AsyncActorRef`` the
asyncio one (``await ref.call(...)``). Both carry per-call options set with
``ref.options(...)``, so option names never collide with a method's own
parameters. A ref that travels in a message is re-bound on arrival to the
receiving process's kernel.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._ops import Awaiting, Blocking, Surface
from ._rpc.waiters import AsyncWaiter, BlockingWaiter, LlmosFuture, StreamWaiter
from ._wire import fastpack
from ._wire import protocol as P
from ._wire.address import ActorAddress
from ._wire.codec import EXT_REF
from .errors import CallTimeout
from .streams import DEFAULT_WINDOW, AsyncStreamCall, StreamCall

if TYPE_CHECKING:
    from ._rpc.connection import Connection
    from ._rpc.core import ClientCore


@dataclass(frozen=True, slots=True)
class CallOptions:
    """Per-call options. None means "the default".

    Attributes:
        timeout: seconds before the call fails with ``CallTimeout``; the
            deadline travels with the message and the actor drops it unrun once passed.
        priority: mailbox priority 0 (lowest) .. 7 (highest); default: the actor's.
        objective: a goal value (larger is more urgent) the scheduler maps to a priority.
        wait_restart: if the actor is down and its supervisor is restarting it, wait
            (up to ``timeout``) for the new incarnation instead of failing fast with
            ``ActorDiedError``. Calls already in flight when it died fail either way.
    """

    timeout: float | None = None
    priority: int | None = None
    objective: float | None = None
    wait_restart: bool = False

    def merge(self, **changes: Any) -> CallOptions:
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise TypeError(f"unknown call options: {', '.join(sorted(unknown))}")
        timeout = changes.get("timeout")
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, not {timeout!r}")
        prio = changes.get("priority")
        if prio is not None and (type(prio) is not int or not 0 <= prio <= 7):
            raise ValueError(f"priority must be an int from 0 (lowest) to 7 (highest), not {prio!r}")
        if "wait_restart" in changes and type(changes["wait_restart"]) is not bool:
            raise TypeError("wait_restart must be True or False")
        return dataclasses.replace(self, **changes)

    def header_extra(self) -> dict | None:
        return None if self.objective is None else {"objective": self.objective}


DEFAULT_OPTIONS = CallOptions()
_NO_BUFS: list = []
_packb = fastpack.packb


class RefOps(Surface):
    """What both flavours of ref share: the address, options, equality, encoding a request."""

    __slots__ = ("_addr", "_conn", "_kernel", "_opts")

    def __init__(self, address: ActorAddress, kernel: Any, options: CallOptions = DEFAULT_OPTIONS) -> None:
        self._addr = address
        self._kernel = kernel
        self._opts = options
        self._conn: Connection | None = None  # the kernel's connection to the actor, once used

    @property
    def address(self) -> ActorAddress:
        return self._addr

    @property
    def id(self) -> str:
        return self._addr.id

    @property
    def name(self) -> str:
        return self._addr.name

    def options(self, **options: Any) -> Any:
        """A ref to the same actor whose calls carry these options (timeout, priority, objective, wait_restart)."""
        return type(self)(self._addr, self._kernel, self._opts.merge(**options))

    def __llmos_wire__(self) -> tuple[int, list]:
        return EXT_REF, self._addr.to_wire()

    def to_dict(self) -> dict[str, str]:
        return self._addr.to_dict()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RefOps) and other._addr.id == self._addr.id

    def __hash__(self) -> int:
        return hash(self._addr.id)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._addr.name or '-'} id={self._addr.id}>"

    # shared plumbing
    def _prepare(
        self, kind: str, method: str, args: tuple, kwargs: dict, extra: dict | None = None
    ) -> tuple[Connection, int, bytes, bytes, list, float | None]:
        if type(method) is not str:
            raise TypeError(f"method name must be a str, not {type(method).__name__}")
        core: ClientCore = self._kernel._core
        opts = self._opts
        conn = self._conn
        if conn is None:
            conn = self._conn = core.actor_connection(self._addr)
        more = opts.header_extra()
        if extra:
            more = {**more, **extra} if more else extra
        msg_id, head, body, bufs, deadline = core.encode(
            kind, method, args, kwargs, timeout=opts.timeout, prio=opts.priority, extra=more, by_value=conn.by_value
        )
        return conn, msg_id, head, body, bufs, deadline


def _plain_body(args: tuple, kwargs: dict, max_bytes: int) -> bytes:
    """The body of a call of plain data, packed without the codec's hooks; b"" when it needs them
    (refs, arrays, tensors) or is too big: then the general road says why."""
    try:
        body = _packb([args, kwargs])
    except (TypeError, ValueError, OverflowError):
        return b""
    return body if len(body) <= max_bytes else b""


def wait_blocking(conn: Connection, msg_id: int, waiter: BlockingWaiter, deadline: float | None, what: str) -> Any:
    """Block until ``waiter`` resolves or the deadline passes (then forget the request)."""
    if not waiter.done:
        try:
            ok = waiter.wait(None if deadline is None else deadline - time.monotonic())
        except BaseException:
            conn.cancel(msg_id)
            raise
        if not ok:
            if conn.cancel(msg_id) is not None:
                raise CallTimeout(f"{what} got no reply from {conn.peer} before its deadline")
            waiter.wait(None)  # the reply raced the deadline: take it
    return waiter.result()


# ``call``, ``ask``, ``tell`` and ``stream`` are written per flavour, not as ``_ops`` operations:
# they are the data plane, where ``llmos bench`` cases 1_1_actor_calls_sync (``ActorRef.call``),
# 1_1_actor_calls_pipelined (``ActorRef.ask``), 1_1_actor_calls_async (``AsyncActorRef.ask``) and
# tell_throughput (``ActorRef.tell``) measure every allocation and lock on the way.


class ActorRef(RefOps, Blocking):
    """A synchronous handle on an actor: ``call`` blocks, ``ask`` returns a future, ``tell`` returns at once."""

    __slots__ = ()

    def call(self, method: str, /, *args: Any, **kwargs: Any) -> Any:
        """Call ``method(*args, **kwargs)`` on the actor and return its result.

        Raises:
            RemoteError: the method raised (remote type, message and traceback attached).
            ActorDiedError: the actor's process exited before replying.
            CallTimeout: the ``timeout`` option passed first.
            MethodNotFound: the actor has no such public method.
        """
        conn, msg_id, head, body, bufs, deadline = self._prepare(P.CALL, method, args, kwargs)
        try:
            if conn.dead is not None and self._opts.wait_restart:
                conn.wait_alive(deadline)
            waiter = BlockingWaiter()
            conn.call_blocking(msg_id, head, body, bufs, waiter, deadline, self._opts.priority)
            result = wait_blocking(conn, msg_id, waiter, deadline, f"call {method!r}")
        except BaseException as exc:
            if msg_id in conn.roots:  # tracing on, and this call started a sampled trace
                self._kernel._core.end_root(msg_id, exc)
            raise
        if msg_id in conn.roots:
            self._kernel._core.end_root(msg_id)
        return result

    def ask(self, method: str, /, *args: Any, **kwargs: Any) -> LlmosFuture:
        """Start ``method(*args, **kwargs)`` and return a future of its result (also awaitable)."""
        conn = self._conn
        if conn is not None and self._opts is DEFAULT_OPTIONS and type(method) is str and conn.dead is None:
            # The hot path, as in ``tell``: plain data, no options. Anything unusual takes the general road.
            body = _plain_body(args, kwargs, conn.max_bytes)
            if body:
                fut = LlmosFuture(conn.futures)
                fut._conn = conn
                core = self._kernel._core
                msg_id = core.next_id()
                tracer = core.tracer
                if tracer is None:
                    conn.request(msg_id, P.request_header(P.CALL, msg_id, method), body, _NO_BUFS, fut)
                    return fut
                extra = tracer.outgoing(method, None, msg_id, core.roots)
                if msg_id in core.roots:
                    core.end_root_with(msg_id, fut)
                conn.request(msg_id, P.request_header(P.CALL, msg_id, method, extra=extra), body, _NO_BUFS, fut)
                return fut
        conn, msg_id, head, body, bufs, deadline = self._prepare(P.CALL, method, args, kwargs)
        fut = LlmosFuture(conn.futures)
        fut._conn = conn
        if msg_id in conn.roots:
            self._kernel._core.end_root_with(msg_id, fut)
        if conn.dead is not None and conn.restarting and self._opts.wait_restart:
            # Never block in ask: the kernel's IO loop sends it once the actor is back.
            self._kernel._send_when_alive(conn, msg_id, head, body, bufs, fut, deadline, self._opts.priority)
        else:
            conn.request(msg_id, head, body, bufs, fut, self._opts.priority)
        if deadline is not None:
            self._kernel._expire_later(conn, msg_id, deadline, f"ask {method!r}")
        return fut

    def stream(self, method: str, /, *args: Any, **kwargs: Any) -> StreamCall:
        """Call a generator method; iterate the result for its items (``close()`` cancels it).

        The ``timeout`` option bounds the wait for each item.
        """
        conn, msg_id, head, body, bufs, _ = self._prepare(P.STREAM, method, args, kwargs, {"credit": DEFAULT_WINDOW})
        waiter = StreamWaiter()
        conn.request(msg_id, head, body, bufs, waiter)
        return StreamCall(self._kernel._core, conn, msg_id, waiter, DEFAULT_WINDOW, self._opts.timeout)

    def tell(self, method: str, /, *args: Any, **kwargs: Any) -> bool:
        """Send ``method(*args, **kwargs)`` one way; returns False if dropped by the ``drop`` policy.

        Raises:
            MailboxFull: the actor's mailbox is full and its policy is ``raise``.
        """
        conn = self._conn
        if conn is not None and self._opts is DEFAULT_OPTIONS and type(method) is str:
            # The hot path: plain data, no options. Anything unusual takes the general road.
            body = _plain_body(args, kwargs, conn.max_bytes)
            if body:
                tracer = conn.tracer
                extra = None if tracer is None else tracer.outgoing(method, None)
                head = P.tell_header(method) if extra is None else P.request_header(P.TELL, 0, method, extra=extra)
                return conn.tell(head, body, _NO_BUFS)
        conn, _msg_id, head, body, bufs, deadline = self._prepare(P.TELL, method, args, kwargs)
        if conn.dead is not None and self._opts.wait_restart:
            conn.wait_alive(deadline)
        return conn.tell(head, body, bufs, deadline=deadline, prio=self._opts.priority)


class AsyncActorRef(RefOps, Awaiting):
    """An asyncio handle on an actor: ``await ref.call(...)``; many calls may be in flight."""

    __slots__ = ()

    async def call(self, method: str, /, *args: Any, **kwargs: Any) -> Any:
        """Call ``method`` on the actor and await its result (errors as in ``ActorRef.call``)."""
        if self._opts.wait_restart:
            conn = self._kernel._core.actor_connection(self._addr)
            if conn.dead is not None:
                timeout = self._opts.timeout
                start = time.monotonic()
                await conn.wait_alive_async(None if timeout is None else start + timeout)
                if timeout is not None:  # what is left of the timeout bounds the call itself
                    left = timeout - (time.monotonic() - start)
                    if left <= 0:
                        raise CallTimeout(f"call {method!r}: {conn.peer} came back too late")
                    opts = dataclasses.replace(self._opts, timeout=left)
                    return await AsyncActorRef(self._addr, self._kernel, opts).ask(method, *args, **kwargs)
        return await self.ask(method, *args, **kwargs)

    def ask(self, method: str, /, *args: Any, **kwargs: Any) -> asyncio.Future:
        """Start the call now and return an asyncio future of its result."""
        if self._opts.wait_restart:
            conn = self._kernel._core.actor_connection(self._addr)
            if conn.dead is not None and conn.restarting:  # sent once the actor is back
                return asyncio.ensure_future(self.call(method, *args, **kwargs))
        conn, msg_id, head, body, bufs, deadline = self._prepare(P.CALL, method, args, kwargs)
        waiter = AsyncWaiter(self._kernel._loop)
        if msg_id in conn.roots:
            self._kernel._core.end_root_with(msg_id, waiter.future)
        conn.request(msg_id, head, body, bufs, waiter, self._opts.priority)
        if deadline is not None:
            self._kernel._expire_later(conn, msg_id, deadline, f"call {method!r}")
        return waiter.future

    def stream(self, method: str, /, *args: Any, **kwargs: Any) -> AsyncStreamCall:
        """Call a generator method: ``async for item in ref.stream(...)``."""
        conn, msg_id, head, body, bufs, _ = self._prepare(P.STREAM, method, args, kwargs, {"credit": DEFAULT_WINDOW})
        waiter = StreamWaiter(self._kernel._loop)
        conn.request(msg_id, head, body, bufs, waiter)
        return AsyncStreamCall(self._kernel._core, conn, msg_id, waiter, DEFAULT_WINDOW, self._opts.timeout)

    async def tell(self, method: str, /, *args: Any, **kwargs: Any) -> bool:
        """Send one way; waits for room while the actor's mailbox is full (policy ``block``)."""
        conn, _msg_id, head, body, bufs, deadline = self._prepare(P.TELL, method, args, kwargs)
        if conn.dead is not None and self._opts.wait_restart:
            await conn.wait_alive_async(deadline)
        return await conn.tell_async(head, body, bufs, deadline=deadline, prio=self._opts.priority)
