"""The client connection's reading handover between a blocked caller and the IO loop.

Real ZeroMQ sockets and a real loop thread; the peer is a ROUTER socket driven by the test.
"""

from __future__ import annotations

import threading
import time

import msgpack
import pytest
import zmq

from llmos_actors._rpc.connection import Connection
from llmos_actors._rpc.driver import IOThread
from llmos_actors._rpc.waiters import BlockingWaiter
from llmos_actors._wire import protocol as P
from llmos_actors._wire.codec import Codec


@pytest.fixture
def wired(tmp_path):
    ctx = zmq.Context()
    io = IOThread("test-io")
    peer = ctx.socket(zmq.ROUTER)
    endpoint = f"ipc://{tmp_path}/peer.sock"
    peer.bind(endpoint)
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, 2)
    sock.connect(endpoint)
    notices: list = []
    seen = threading.Condition()

    def on_notice(conn, head, body):
        with seen:
            notices.append(body)
            seen.notify_all()

    conn = Connection(io.driver, sock, Codec(), peer="test peer", on_notice=on_notice, always_armed=True)
    io.driver.call_soon(conn.attach)
    try:
        yield conn, peer, notices, seen
    finally:
        io.run(conn.close, 0)
        io.stop()
        peer.close(0)
        ctx.term()


def test_notice_right_behind_a_direct_reply_reaches_the_loop(wired):
    # The caller reads its own reply on its thread; a notice queued just behind it must not
    # be stranded: reading ate the fd's edge, so nothing would wake the IO loop for it.
    conn, peer, notices, seen = wired
    for n in range(1, 21):
        waiter = BlockingWaiter()
        head, body = P.request_header(P.CALL, n, "m"), msgpack.packb([[], {}])
        sender = threading.Thread(target=conn.call_blocking, args=(n, head, body, [], waiter, time.monotonic() + 5))
        sender.start()
        ident, _, _ = peer.recv_multipart()
        # Reply and notice leave together, so both are queued when the caller reads the first.
        peer.send_multipart([ident, P.reply_header(P.OK, n), msgpack.packb(n)])
        peer.send_multipart([ident, P.reply_header(P.NOTICE, 0), msgpack.packb({"event": "x", "n": n})])
        sender.join(5)
        assert waiter.wait(5) and waiter.result() == n
        with seen:
            assert seen.wait_for(lambda n=n: len(notices) == n, 5), f"notice {n} was never read"
