"""Streaming calls: a generator method's items arrive as an iterator; closing it cancels the producer.

Flow control is by credit: the actor sends at most ``window`` items ahead of
what the caller has consumed, so a slow consumer never makes either side
buffer without bound. ``ref.options(timeout=...)`` bounds the wait for each item.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._rpc.waiters import StreamWaiter
from ._wire import protocol as P
from .errors import CallTimeout

if TYPE_CHECKING:
    from ._rpc.connection import Connection
    from ._rpc.core import ClientCore

#: Items the actor may send ahead of the consumer.
DEFAULT_WINDOW = 64

END = StreamWaiter.END


class _StreamBase:
    def __init__(
        self, core: ClientCore, conn: Connection, msg_id: int, waiter: StreamWaiter, window: int, timeout: float | None
    ) -> None:
        self._core = core
        self._conn = conn
        self._id = msg_id
        self._waiter = waiter
        self._window = window
        self._timeout = timeout
        self._consumed = 0
        self._done = False
        self.count = 0

    def _control(self, kind: str, args: list) -> None:
        if self._conn.dead is not None:
            return
        body, _ = self._core.codec.pack([args, {}])
        head = P.request_header(kind, self._id, "")
        try:
            self._conn.send_now(None, head, body, [])
        except Exception:  # the connection is closing: nothing to tell the actor
            pass

    def _took(self) -> None:
        self.count += 1
        self._consumed += 1
        half = max(1, self._window // 2)
        if self._consumed >= half:
            self._control(P.CREDIT, [self._consumed])
            self._consumed = 0

    def _take(self, ok: bool, value: Any) -> Any:
        """One outcome from the waiter: the item, ``END``, or its error raised (a timeout leaves
        the stream open: the next item may still come)."""
        if ok and value is END:
            self._finish()
            return END
        if not ok:
            if not isinstance(value, CallTimeout):
                self._finish()
            raise value
        self._took()
        return value

    def _finish(self) -> None:
        self._done = True
        self._conn.cancel(self._id)

    def close(self) -> None:
        """Stop the stream: the actor closes the generator (its ``finally`` blocks run)."""
        if self._done:
            return
        self._finish()
        self._control(P.CANCEL, [])
        self._waiter.close()

    @property
    def closed(self) -> bool:
        return self._done


class StreamCall(_StreamBase):
    """Items of a streaming call: iterate it, or use it as a context manager that closes it."""

    def __iter__(self) -> StreamCall:
        return self

    def __next__(self) -> Any:
        if self._done:
            raise StopIteration
        value = self._take(*self._waiter.get(self._timeout))
        if value is END:
            raise StopIteration
        return value

    def __enter__(self) -> StreamCall:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        if not getattr(self, "_done", True):
            self.close()


class AsyncStreamCall(_StreamBase):
    """Items of a streaming call for asyncio: ``async for item in ref.stream(...)``."""

    def __aiter__(self) -> AsyncStreamCall:
        return self

    async def __anext__(self) -> Any:
        if self._done:
            raise StopAsyncIteration
        import asyncio

        try:
            ok, value = await asyncio.wait_for(self._waiter.aget(), self._timeout)
        except asyncio.TimeoutError:
            raise CallTimeout(f"no stream item within {self._timeout} s") from None
        value = self._take(ok, value)
        if value is END:
            raise StopAsyncIteration
        return value

    async def aclose(self) -> None:
        self.close()

    async def __aenter__(self) -> AsyncStreamCall:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.close()
