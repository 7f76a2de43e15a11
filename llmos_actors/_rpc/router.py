"""The bound ROUTER every server reads from (the daemon's control socket, each actor's socket)."""

from __future__ import annotations

import zmq

from .._wire.limits import limit_inbound

#: Zmq messages the ROUTER queues inbound before senders block (each may be a batch).
RECV_HWM = 128


def make_router(ctx: zmq.Context, endpoint: str, *, max_bytes: int = 0, send_queue: int = 0) -> zmq.Socket:
    """A ROUTER bound at ``endpoint`` with our options (unroutable replies raise).

    Args:
        max_bytes: largest frame accepted (``MAXMSGSIZE``; a peer sending more is disconnected unread).
        send_queue: replies queued per caller (0: unbounded, replies never drop); a caller whose
            queue is full is cut off (see ``RpcServer``).
    """
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
    sock.setsockopt(zmq.SNDHWM, send_queue)
    if max_bytes:
        limit_inbound(sock, max_bytes)
    sock.setsockopt(zmq.RCVHWM, RECV_HWM)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind(endpoint)
    return sock
