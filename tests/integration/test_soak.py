"""Soak: every kind of traffic at once for minutes; nothing may grow, leak or go wrong.

Not in the default run: ``make soak`` (``pytest -m soak``). ``LLMOS_SOAK_SECONDS``
sets its length (default 120). Sync calls, pipelined asks, tells, pub/sub, arrays
through the page pool, the object store and a churn of short-lived actors run side
by side. Every reply must be the right one; at the end the daemon's and the
long-lived actors' memory, the daemon's file descriptors and the pool must be
where they were once the run had warmed up.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter

import numpy as np
import psutil
import pytest
from page_actors import PageUser

from llmos_actors.bench.actors import Subscriber
from llmos_actors.testing import start_daemon, wait_for

from actors import Counter as CounterActor

#: Growth allowed between the warmed-up sample and the end (bytes of RSS, descriptors).
RSS_SLACK = 64 << 20
FD_SLACK = 16


def _rss(pid: int) -> int:
    return psutil.Process(pid).memory_info().rss


@pytest.mark.soak
@pytest.mark.timeout(1800)
def test_mixed_traffic_for_minutes_stays_correct_and_bounded():
    seconds = float(os.environ.get("LLMOS_SOAK_SECONDS", "120"))
    with start_daemon(grace=2.0, heartbeat_interval=0.5, pages={"size": "512MiB"}) as daemon:
        kernel = daemon.connect()
        counter = kernel.spawn(CounterActor, name="soak-counter")
        listener = kernel.spawn(Subscriber, name="soak-listener")  # counts, keeps nothing
        listener.call("listen", "soak.")
        pages = kernel.spawn(PageUser, name="soak-pages")
        long_lived = [counter, listener, pages]
        pids = {r["id"]: r["pid"] for r in kernel.ps(exited=False)}
        stop = threading.Event()
        done: Counter = Counter()
        wrong: list[str] = []

        def calls() -> None:
            k = daemon.connect()
            ref = k.lookup("soak-counter")
            i = 0
            while not stop.is_set():
                i += 1
                if ref.call("echo", {"i": i}) != {"i": i}:
                    wrong.append(f"echo {i}")
                asks = [ref.ask("echo", j) for j in range(100)]
                if [a.result(timeout=30) for a in asks] != list(range(100)):
                    wrong.append("pipelined replies out of order")
                done["calls"] += 101

        def tells() -> None:
            k = daemon.connect()
            ref = k.lookup("soak-counter")
            while not stop.is_set():
                before = ref.call("get")
                for _ in range(500):
                    ref.tell("incr")
                after = ref.call("get")  # per-sender FIFO: every tell ran before this call
                if after - before < 500:
                    wrong.append(f"tells lost: {after - before} of 500")
                done["tells"] += 500

        def publish() -> None:
            k = daemon.connect()
            while not stop.is_set():
                for n in range(200):
                    k.publish("soak.news", {"n": n})
                done["published"] += 200
                stop.wait(0.01)  # a steady stream, not a flood: at-most-once is tested elsewhere

        def arrays() -> None:
            k = daemon.connect()
            ref = k.lookup("soak-pages")
            while not stop.is_set():
                a = k.np_zeros(1 << 18)  # 2 MiB in the pool: a handle travels
                a[-1] = 3.0
                if ref.call("total", a) != 3.0:
                    wrong.append("array total")
                del a
                obj = k.put(np.arange(1000, dtype=np.float64))
                if float(k.get(obj).sum()) != 499500.0:
                    wrong.append("object store")
                k.free(obj)
                done["arrays"] += 1

        def churn() -> None:
            k = daemon.connect()
            while not stop.is_set():
                short = k.spawn(CounterActor, 7)
                if short.call("incr") != 8:
                    wrong.append("short-lived actor")
                k.kill(short)
                done["spawned"] += 1

        threads = [threading.Thread(target=fn, daemon=True) for fn in (calls, tells, publish, arrays, churn)]
        for t in threads:
            t.start()

        def sample() -> dict:
            proc = psutil.Process(daemon.pid)
            return {
                "daemon_rss": proc.memory_info().rss,
                "daemon_fds": proc.num_fds(),
                "actors_rss": {ref.id: _rss(pids[ref.id]) for ref in long_lived},
                "my_rss": psutil.Process().memory_info().rss,
            }

        warm_until = time.monotonic() + max(5.0, seconds * 0.2)
        wait_for(lambda: time.monotonic() > warm_until or stop.is_set(), seconds, what="the warm-up")
        warm = sample()
        end_at = time.monotonic() + seconds * 0.8
        wait_for(lambda: time.monotonic() > end_at or bool(wrong), seconds + 60, what="the soak")
        stop.set()
        for t in threads:
            t.join(60)
        assert not any(t.is_alive() for t in threads), "a traffic thread hung"
        assert not wrong, wrong[:10]
        end = sample()

        assert done["calls"] > 0 and done["tells"] > 0 and done["arrays"] > 0 and done["spawned"] > 0, done
        assert 0 < listener.call("received") <= done["published"], done
        assert end["daemon_rss"] - warm["daemon_rss"] < RSS_SLACK, (warm, end, done)
        assert end["daemon_fds"] - warm["daemon_fds"] < FD_SLACK, (warm, end, done)
        for actor_id, rss in end["actors_rss"].items():
            assert rss - warm["actors_rss"][actor_id] < RSS_SLACK, (actor_id, warm, end, done)
        assert end["my_rss"] - warm["my_rss"] < RSS_SLACK, (warm, end, done)
        # Everything handed over or stored was released: the pool is back to nothing in use.
        wait_for(lambda: kernel.status()["pages"]["objects"] == 0, 30, what="stored objects to be freed")
        live = {r["name"] for r in kernel.ps(exited=False)}
        assert live == {"soak-counter", "soak-listener", "soak-pages"}, live
