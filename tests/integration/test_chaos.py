"""Chaos: kill -9 a random permanent actor every 200 ms for 30 s while calls keep coming (issue 5).

Not in the default run: ``make chaos`` (``pytest -m chaos``). ``LLMOS_CHAOS_SECONDS``
shortens or lengthens it. Every call must either succeed with its own reply or fail
with ``ActorDiedError`` / ``CallTimeout``; nothing may hang; every actor runs at the end.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections import Counter

import pytest

import llmos_actors as llmos
from llmos_actors.testing import start_daemon, wait_for

from supervision_actors import Worker

N_ACTORS = 8
LOAD_THREADS = 4
KILL_EVERY = 0.2
CALL_TIMEOUT = 2.0


@pytest.mark.chaos
@pytest.mark.timeout(600)
def test_kill9_random_actors_under_load():
    seconds = float(os.environ.get("LLMOS_CHAOS_SECONDS", "30"))
    with start_daemon(grace=2.0, heartbeat_interval=0.5) as daemon:
        kernel = daemon.connect()
        sup = kernel.supervisor(name="chaos", intensity=1_000_000, period=1.0, backoff=0.0, backoff_max=0.05)
        refs = [sup.spawn(Worker, f"w{i}", name=f"chaos-{i}") for i in range(N_ACTORS)]
        stop = threading.Event()
        outcomes: Counter = Counter()
        wrong: list = []
        lock = threading.Lock()

        def load(seed: int) -> None:
            rng = random.Random(seed)
            i = 0
            while not stop.is_set():
                ref = refs[rng.randrange(N_ACTORS)]
                token = f"{seed}:{i}"
                i += 1
                wait = rng.random() < 0.5  # half fail fast, half wait for the restart
                try:
                    reply = ref.options(timeout=CALL_TIMEOUT, wait_restart=wait).call("echo", token)
                    kind = "ok" if reply == [ref.id, token] else "wrong"
                    if kind == "wrong":
                        wrong.append((ref.id, token, reply))
                except llmos.ActorDiedError:
                    kind = "died"
                except llmos.CallTimeout:
                    kind = "timeout"
                except Exception as exc:  # anything else is a bug
                    kind = "unexpected"
                    wrong.append((ref.id, token, repr(exc)))
                with lock:
                    outcomes[kind] += 1

        threads = [threading.Thread(target=load, args=(seed,), daemon=True) for seed in range(LOAD_THREADS)]
        for t in threads:
            t.start()
        rng = random.Random(1234)
        killed: set[int] = set()
        end = time.monotonic() + seconds
        next_kill = time.monotonic()
        while time.monotonic() < end:
            next_kill += KILL_EVERY
            victim = refs[rng.randrange(N_ACTORS)]
            row = next(r for r in kernel.ps() if r["id"] == victim.id)
            if row["state"] == "running" and row["pid"] and row["pid"] not in killed:  # (a zombie not yet reaped)
                try:
                    os.kill(row["pid"], signal.SIGKILL)
                    killed.add(row["pid"])
                except ProcessLookupError:
                    pass
            stop.wait(max(0.0, next_kill - time.monotonic()))
        stop.set()
        for t in threads:
            t.join(CALL_TIMEOUT * 3)
        hung = [t for t in threads if t.is_alive()]

        def all_running():
            return all(r["state"] == "running" for r in kernel.ps() if r["id"] in {x.id for x in refs})

        wait_for(all_running, 30, what="every actor to be running again")
        finals = [r.options(timeout=10, wait_restart=True).call("echo", "final") for r in refs]
        restarts = sum(r["restarts"] for r in kernel.ps() if r["id"] in {x.id for x in refs})
        kills = len(killed)
        print(f"\nchaos: {seconds:g} s, {kills} kills, {restarts} restarts, calls {dict(outcomes)}")
        print("restart latency (daemon):", {k: v for k, v in kernel.status()["supervisor"].items() if "ms" in k})
        assert not hung, "a caller hung"
        assert not wrong, f"wrong replies or unexpected errors: {wrong[:5]}"
        assert outcomes["ok"] > 0 and kills >= seconds / KILL_EVERY * 0.5
        assert [f[1] for f in finals] == ["final"] * N_ACTORS
        assert restarts == kills
        sup.stop(grace=2.0)
