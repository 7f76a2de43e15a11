"""Sending and receiving multipart messages on the hot path, below pyzmq's Python layer.

pyzmq's ``send_multipart``/``recv_multipart`` and even ``Socket.send`` run Python
code per frame (enum flag arithmetic, type checks, copy thresholds): about 5 µs
per request/reply pair here, as much as the rest of our Python per call. These
helpers call the Cython socket methods directly with plain int flags.

Receiving: the routing id, header and body (small, parsed at once) arrive as
``bytes``; every later part stays a ``zmq.Frame``, whose writable ``buffer`` the
codec wraps without a copy (an out-of-band tensor is never copied on receipt).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import zmq
from zmq.backend import Socket as _BaseSocket

if TYPE_CHECKING:
    from collections.abc import Callable

_RCVMORE = int(zmq.RCVMORE)
_SNDMORE = int(zmq.SNDMORE)
_send = _BaseSocket.send
_recv = _BaseSocket.recv
_get = _BaseSocket.get
#: ``getsockopt`` without pyzmq's Python layer (``get_option(sock, zmq.EVENTS)``).
get_option = cast("Callable[[zmq.Socket, int], int]", _BaseSocket.get)


def recv_message(sock: zmq.Socket, flags: int, copied: int) -> list:
    """One multipart message; parts after the first ``copied`` ones come as ``zmq.Frame``.

    Raises:
        zmq.Again: nothing to read (``flags`` has NOBLOCK, or RCVTIMEO passed).
    """
    parts: list = [_recv(sock, flags)]
    while _get(sock, _RCVMORE):
        parts.append(_recv(sock, flags, copy=len(parts) < copied))
    return parts


def send_message(sock: zmq.Socket, parts: list, flags: int) -> None:
    """Send ``parts`` as one multipart message; buffers (memoryviews, frames) go without a copy.

    Raises:
        zmq.Again: the socket is full (``flags`` has NOBLOCK). Nothing was sent: ZeroMQ
            queues a multipart message whole or not at all, and only the first part can
            fail this way.
    """
    last = len(parts) - 1
    more = flags | _SNDMORE
    for i, part in enumerate(parts):
        copy = type(part) is bytes
        _send(sock, part, more if i < last else flags, copy=copy)
