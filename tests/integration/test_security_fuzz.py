"""Fuzzing every socket a client can reach; afterwards the daemon and its actors are as before.

Targets: the control socket, an actor's socket, the publish inbox, the subscriber socket
(events), the pages channel and its note ring, and the TCP (CurveZMQ) endpoints, before
and after the handshake. The default run sends ``FRAMES`` inputs per socket (a few
thousand); ``make fuzz`` runs the ``fuzz``-marked tests with at least 100,000 each.

After each target: the daemon and an actor answer a normal client within 100 ms, the
daemon holds no more descriptors than before, its RSS is within 10 %, no actor is left
``starting`` and no record was added.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import fuzz_drivers as F
import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmos_actors._wire import protocol as P
from llmos_actors.config import CONTROL_SOCKET, EVENTS_SOCKET, PUBLISH_SOCKET, tcp_endpoint
from llmos_actors.keys import generate_keypair
from llmos_actors.testing import free_tcp_ports, short_tmpdir, start_daemon, wait_for

from actors import Counter

FRAMES = int(os.environ.get("LLMOS_FUZZ_FRAMES", "2000"))
LONG_FRAMES = max(100_000, int(os.environ.get("LLMOS_FUZZ_LONG_FRAMES", "100000")))
TARGETS = ["control", "actor", "publish", "subscriber", "pages", "tcp_control", "tcp_actor", "tcp_handshake"]


@pytest.fixture(scope="module")
def setup():
    base = short_tmpdir("llmos-fz-")
    authorized = base / "authorized"
    authorized.mkdir(mode=0o700)
    secret, public = generate_keypair("fuzzer", base / "client")
    shutil.copy(public, authorized / "fuzzer.pub")
    port = free_tcp_ports(3)
    url = f"tcp://127.0.0.1:{port}"
    with start_daemon(
        grace=2.0,
        network={"listen": [url], "authorized_keys": str(authorized), "server_key": str(base / "server.key")},
    ) as d:
        kernel = d.connect()
        actor = kernel.spawn(Counter, name="fuzz-target")
        kernel.grant(actor, "key:fuzzer")  # the TCP fuzzer (a user) may call it: its frames reach the actor
        server = (base / "server.pub").read_text().strip().encode()
        mine = secret.read_text().strip().encode()
        import zmq

        curve = {"CURVE_SERVERKEY": server, "CURVE_SECRETKEY": mine, "CURVE_PUBLICKEY": zmq.curve_public(mine)}
        yield {"daemon": d, "kernel": kernel, "actor": actor, "url": url, "curve": curve, "port": port, "key": secret}
        kernel.close()
    shutil.rmtree(base, ignore_errors=True)


def run_target(setup, target: str, n: int, seed: int) -> None:
    d = setup["daemon"]
    rd = d.runtime_dir
    if target == "control":
        F.router(d.config.endpoint(CONTROL_SOCKET), n, seed)
    elif target == "actor":
        F.router(setup["actor"].address.endpoint, n, seed)
    elif target == "publish":
        F.publisher(d.config.endpoint(PUBLISH_SOCKET), n, seed)
    elif target == "subscriber":
        F.subscriber(d.config.endpoint(EVENTS_SOCKET), n, seed)
    elif target == "pages":
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
        driver = Path(F.__file__)
        subprocess.run(
            [sys.executable, str(driver), "pages", str(rd / "pages"), str(n), str(seed)], env=env, check=True
        )
    elif target == "tcp_control":
        F.router(tcp_endpoint(setup["url"], CONTROL_SOCKET), n, seed, setup["curve"])
    elif target == "tcp_actor":
        F.router(_tcp_endpoint_of_actor(setup), n, seed, setup["curve"])
    elif target == "tcp_handshake":
        F.tcp_handshake("127.0.0.1", setup["port"], n, seed)


def _tcp_endpoint_of_actor(setup) -> str:
    import llmos_actors as llmos

    with llmos.connect(setup["url"], key=setup["key"], server_key=setup["curve"]["CURVE_SERVERKEY"].decode()) as remote:
        return remote.lookup("fuzz-target").address.endpoint


def _fast(fn, limit: float = 0.1, tries: int = 5) -> float:
    best = float("inf")
    for _ in range(tries):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
        if best < limit:
            break
    return best


def check_health(setup, before: dict) -> None:
    d, kernel, actor = setup["daemon"], setup["kernel"], setup["actor"]
    proc = psutil.Process(d.pid)
    assert _fast(kernel.status) < 0.1, "the daemon does not answer within 100 ms"
    assert _fast(lambda: actor.call("incr")) < 0.1, "the actor does not answer within 100 ms"
    wait_for(lambda: proc.num_fds() <= before["fds"], 10, what=f"daemon descriptors back to {before['fds']}")
    rss = proc.memory_info().rss
    assert rss <= before["rss"] * 1.10, f"daemon RSS grew from {before['rss']} to {rss}"
    rows = kernel.ps()
    assert not [r for r in rows if r["state"] == "starting"]
    assert {r["id"] for r in rows if r["state"] != "exited"} == before["live"]


def snapshot(setup) -> dict:
    proc = psutil.Process(setup["daemon"].pid)
    rows = setup["kernel"].ps()
    return {
        "fds": proc.num_fds(),
        "rss": proc.memory_info().rss,
        "live": {r["id"] for r in rows if r["state"] != "exited"},
    }


@pytest.fixture(scope="module")
def warmed(setup):
    """One small round on every target first, so the baseline includes what any first use allocates."""
    for target in TARGETS:
        run_target(setup, target, 200, seed=1)
    return snapshot(setup)


@pytest.mark.parametrize("target", TARGETS)
def test_fuzz(setup, warmed, target):
    run_target(setup, target, FRAMES, seed=1000 + TARGETS.index(target))
    check_health(setup, warmed)


@pytest.mark.fuzz
@pytest.mark.timeout(3600)
@pytest.mark.parametrize("target", TARGETS)
def test_fuzz_long(setup, warmed, target):
    run_target(setup, target, LONG_FRAMES, seed=2000 + TARGETS.index(target))
    check_health(setup, warmed)


_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=50)
    | st.binary(max_size=50),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(method=st.sampled_from(F.METHODS) | st.text(max_size=20), args=st.lists(_VALUES, max_size=4), kwargs=_VALUES)
def test_structured_control_requests(setup, warmed, method, args, kwargs):
    """Every control method with arbitrary arguments: an answer (or an error reply), never a crash."""
    import msgpack
    import zmq

    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(setup["daemon"].config.endpoint(CONTROL_SOCKET))
    try:
        kw = kwargs if isinstance(kwargs, dict) else {}
        sock.send_multipart([P.request_header(P.CALL, 7, method), msgpack.packb([args, kw])])
        if method not in ("spawn", "pool_create", "sync_acquire", "cond_wait", "barrier_wait", "event_wait", "kill"):
            assert sock.poll(5000), f"no reply to {method!r}"
    finally:
        sock.close(0)


def test_health_after_structured(setup, warmed):
    check_health(setup, warmed)
