"""Size limits every socket enforces before it reads a message.

``zmq.MAXMSGSIZE`` makes libzmq check each incoming frame's announced size in its
header and drop the connection of a peer that announces more, before allocating
anything: one oversized frame costs the receiver nothing. Frames carry a message
body or one out-of-band buffer (a tensor), each bounded by ``max_message_bytes``;
``FRAME_SLACK`` leaves room for the header and the batching around a body.
"""

from __future__ import annotations

import zmq

#: Room above ``max_message_bytes`` for headers and batch framing (bytes).
FRAME_SLACK = 1024 * 1024
#: Frames on sockets that only carry control messages (subscriptions, topic control).
CONTROL_FRAME_BYTES = 1024 * 1024


def frame_limit(max_message_bytes: int) -> int:
    """The ``MAXMSGSIZE`` for a socket that carries bodies of up to ``max_message_bytes``."""
    return max_message_bytes + FRAME_SLACK


def limit_inbound(sock: zmq.Socket, max_bytes: int) -> zmq.Socket:
    """Set ``MAXMSGSIZE`` (must be done before bind/connect); returns the socket."""
    sock.setsockopt(zmq.MAXMSGSIZE, int(max_bytes))
    return sock
