"""Receiving a multipart message: small parts as bytes, out-of-band buffers without a copy.

``recv_multipart(copy=True)`` copies every part into a new ``bytes``; for a tensor
sent as its own frame that is a full copy into fresh pages, and the codec then
copied it again to get a writable buffer. Here the routing id, header and body
(small, used as dict keys and parsed at once) arrive as ``bytes``, and every
later part stays a ``zmq.Frame``, whose writable ``buffer`` the codec wraps as is.
"""

from __future__ import annotations

import zmq

_RCVMORE = int(zmq.RCVMORE)


def recv_message(sock: zmq.Socket, flags: int, copied: int) -> list:
    """One multipart message; parts after the first ``copied`` ones come as ``zmq.Frame``.

    Raises:
        zmq.Again: nothing to read (``flags`` has NOBLOCK, or RCVTIMEO passed).
    """
    recv = sock.recv
    getsockopt = sock.getsockopt
    parts: list = [recv(flags)]
    while getsockopt(_RCVMORE):
        parts.append(recv(flags, copy=len(parts) < copied))
    return parts
