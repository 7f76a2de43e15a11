"""Limits on what one client can make the daemon hold: frame sizes, send queues, quotas.

A daemon of its own with small limits, so each one is reached quickly; every refusal
names the limit and its value, and the daemon stays responsive and small.
"""

from __future__ import annotations

import time

import msgpack
import psutil
import pytest
import zmq

import llmos_actors as llmos
from llmos_actors._wire import protocol as P
from llmos_actors.config import CONTROL_SOCKET
from llmos_actors.testing import start_daemon, wait_for

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def daemon():
    with start_daemon(
        grace=2.0,
        max_message_bytes=1 * MiB,
        limits={"send_queue": 20, "actors": 3, "subscriptions": 5, "waiters": 3, "stored_objects": 2},
    ) as handle:
        yield handle


def _raw_dealer(daemon, endpoint=None, **options):
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    for key, value in options.items():
        sock.setsockopt(getattr(zmq, key), value)
    sock.connect(endpoint or daemon.config.endpoint(CONTROL_SOCKET))
    return sock


def _call(sock, msg_id, method, *args):
    sock.send_multipart([P.request_header(P.CALL, msg_id, method), msgpack.packb([list(args), {}])])


def _answers_fast(kernel) -> float:
    start = time.monotonic()
    kernel.status()
    return time.monotonic() - start


def test_an_oversized_frame_is_dropped_unread(daemon, kernel):
    proc = psutil.Process(daemon.pid)
    rss = proc.memory_info().rss
    sock = _raw_dealer(daemon)
    try:
        big = b"\0" * (64 * MiB)
        for i in range(4):
            sock.send_multipart([P.request_header(P.CALL, i + 1, "status"), big])
        assert sock.poll(500) == 0  # no reply: the daemon dropped the connection, never read the body
        assert _answers_fast(kernel) < 0.5
        assert proc.memory_info().rss - rss < 32 * MiB  # not one 64 MiB frame was held
    finally:
        sock.close(0)


def test_an_oversized_frame_to_an_actor_is_dropped_unread(daemon, kernel):
    from actors import Counter

    ref = kernel.spawn(Counter)
    sock = _raw_dealer(daemon, ref.address.endpoint)
    try:
        sock.send_multipart([P.request_header(P.CALL, 1, "incr"), b"\0" * (8 * MiB)])
        assert sock.poll(300) == 0
        assert ref.call("incr") == 1
    finally:
        sock.close(0)
        kernel.kill(ref)


def test_a_client_that_never_reads_is_cut_off(daemon, kernel):
    proc = psutil.Process(daemon.pid)
    rss = proc.memory_info().rss
    sock = _raw_dealer(daemon, RCVHWM=1, RCVBUF=4096)
    try:
        sent = 0

        def cut_off():
            nonlocal sent
            for _ in range(200):
                sent += 1
                try:
                    _call(sock, sent, "ps")
                except zmq.Again:
                    break
            return kernel.status()["counters"].get("clients_cut_off", 0) >= 1

        wait_for(cut_off, 20, what="the daemon to cut off a client that does not read")
        assert _answers_fast(kernel) < 0.5
        assert proc.memory_info().rss - rss < 64 * MiB
    finally:
        sock.close(0)


def test_actor_quota_names_the_limit(kernel):
    from actors import Counter

    refs = [kernel.spawn(Counter) for _ in range(3)]
    with pytest.raises(llmos.LimitExceeded, match=r"\[limits\] actors = 3"):
        kernel.spawn(Counter)
    kernel.kill(refs[0])
    kernel.spawn(Counter)  # room again


def test_subscription_quota_names_the_limit(kernel):
    subs = [kernel.subscribe(f"q{i}.") for i in range(5)]
    try:
        with pytest.raises(llmos.LimitExceeded, match=r"subscriptions = 5"):
            kernel.subscribe("q5.")
    finally:
        for s in subs:
            s.close()


def test_waiter_quota_names_the_limit(daemon, kernel):
    import os

    m = kernel.mutex("quota-m")
    assert m.acquire(timeout=5)
    sock = _raw_dealer(daemon)
    try:
        who = {"pid": os.getpid(), "owner": "w"}
        for ticket in range(1, 5):
            head = P.request_header(P.CALL, ticket, "sync_acquire")
            sock.send_multipart([head, msgpack.packb([["mutex", "quota-m", None, who, 30.0, ticket], {}])])
        assert sock.poll(5000)
        head, body = sock.recv_multipart()
        reply = msgpack.unpackb(head)
        assert reply["id"] == 4 and reply["kind"] == "err"
        assert "[limits] waiters = 3" in msgpack.unpackb(body)["message"]
    finally:
        sock.close(0)
        m.release()


def test_store_quota_names_the_limit(kernel):
    import numpy as np

    refs = [kernel.put(np.zeros(100_000)) for _ in range(2)]
    with pytest.raises(llmos.LimitExceeded, match=r"\[limits\] stored_objects = 2"):
        kernel.put(np.zeros(100_000))
    kernel.free(refs[0])
    refs[0] = kernel.put(np.zeros(100_000))  # room again
    for ref in refs:
        kernel.free(ref)


def test_limits_are_checked_at_start(tmp_path):
    from llmos_actors._kernel.quotas import Limits

    with pytest.raises(llmos.ConfigError, match="actorz"):
        Limits.from_config({"actorz": 1})
    with pytest.raises(llmos.ConfigError, match="positive"):
        Limits.from_config({"actors": 0})
