"""Remote clients over TCP: CurveZMQ only, unknown keys refused before any message is read.

One daemon listening on loopback; a key pair per client made with ``llmos keygen``;
``alice`` is authorized (role user, may spawn test actors), ``eve`` is not.
"""

from __future__ import annotations

import shutil

import msgpack
import pytest
import zmq

import llmos_actors as llmos
from llmos_actors._wire import protocol as P
from llmos_actors.keys import generate_keypair
from llmos_actors.testing import free_tcp_ports, short_tmpdir, start_daemon

from actors import Counter


@pytest.fixture(scope="module")
def keys():
    base = short_tmpdir("llmos-keys-")
    authorized = base / "authorized"
    authorized.mkdir(mode=0o700)
    out = {"base": base, "authorized": authorized}
    for name in ("alice", "watcher", "eve"):
        out[name] = generate_keypair(name, base / "client")
    shutil.copy(out["alice"][1], authorized / "alice.pub")
    shutil.copy(out["watcher"][1], authorized / "watcher.pub")
    yield out
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def daemon(keys):
    port = free_tcp_ports(3)
    with start_daemon(
        grace=2.0,
        connect_timeout=2.0,
        network={
            "listen": [f"tcp://127.0.0.1:{port}"],
            "authorized_keys": str(keys["authorized"]),
            "server_key": str(keys["base"] / "server.key"),
        },
        security={"user_modules": ["actors"], "roles": {"key:watcher": "observer"}},
    ) as handle:
        handle.url = f"tcp://127.0.0.1:{port}"
        handle.server_pub = keys["base"] / "server.pub"
        yield handle


def _remote(daemon, keys, name="alice", **kw):
    return llmos.connect(daemon.url, key=keys[name][0], server_key=str(kw.get("server_key", daemon.server_pub)))


def _raw(daemon, ctx, **curve):
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    for k, v in curve.items():
        sock.setsockopt(getattr(zmq, k), v)
    sock.connect(daemon.url)
    sock.send_multipart([P.request_header(P.CALL, 1, "status"), msgpack.packb([[], {}])])
    return sock


def test_authorized_key_calls_straight_to_the_actor(daemon, keys):
    with _remote(daemon, keys) as k:
        ref = k.spawn(Counter, name="remote-counter")
        assert ref.address.endpoint.startswith("tcp://127.0.0.1:")
        assert [ref.call("incr") for _ in range(3)] == [1, 2, 3]
        assert k.lookup("remote-counter").call("incr") == 4
        assert any(r["name"] == "remote-counter" for r in k.ps())
        k.kill(ref)


def test_unauthenticated_unknown_and_wrong_server_keys_are_refused(daemon, keys):
    ctx = zmq.Context()
    try:
        plain = _raw(daemon, ctx)
        eve_public = keys["eve"][1].read_text().strip().encode()
        eve_secret = keys["eve"][0].read_text().strip().encode()
        server = daemon.server_pub.read_text().strip().encode()
        unknown = _raw(daemon, ctx, CURVE_SERVERKEY=server, CURVE_PUBLICKEY=eve_public, CURVE_SECRETKEY=eve_secret)
        fake_server, _ = zmq.curve_keypair()
        alice_secret = keys["alice"][0].read_text().strip().encode()
        wrong_server = _raw(
            daemon,
            ctx,
            CURVE_SERVERKEY=fake_server,
            CURVE_PUBLICKEY=zmq.curve_public(alice_secret),
            CURVE_SECRETKEY=alice_secret,
        )
        for sock in (plain, unknown, wrong_server):
            assert sock.poll(700) == 0
            sock.close(0)
    finally:
        ctx.term()
    with pytest.raises(llmos.DaemonUnavailable):
        _remote(daemon, keys, "eve").status()
    with daemon.connect() as local:
        assert local.status()["network"]["refused"] >= 2


def test_roles_over_tcp(daemon, keys):
    with daemon.connect() as local:
        mine = local.spawn(Counter, name="local-owned")
        with _remote(daemon, keys) as alice:
            with pytest.raises(llmos.PermissionDenied, match="belongs to"):
                alice.kill("local-owned")
            with pytest.raises(llmos.PermissionDenied, match="user_modules"):
                alice.spawn("llmos_actors.bench.actors:Echo")
        with _remote(daemon, keys, "watcher") as watcher:
            assert watcher.status()["pid"] == daemon.pid
            with pytest.raises(llmos.PermissionDenied, match="observer"):
                watcher.spawn(Counter)
            with pytest.raises(llmos.PermissionDenied, match="observer"):
                watcher.kill("local-owned")
        assert mine.call("incr") == 1
        local.kill(mine)


def test_remote_audit_and_topics(daemon, keys):
    with daemon.connect() as local, local.subscribe("sys.audit") as audit, _remote(daemon, keys) as alice:
        alice.audit({"action": "remote-hello"})
        _, event = audit.get(timeout=5)
        assert event["by"] == "key:alice" and event["event"]["action"] == "remote-hello"
        with alice.subscribe("remote.") as sub:
            import time

            deadline = time.monotonic() + 10
            while True:
                local.publish("remote.x", 42)
                try:
                    assert sub.get(timeout=0.2) == ("remote.x", 42)
                    break
                except TimeoutError:
                    assert time.monotonic() < deadline


def test_keygen_cli(tmp_path, capsys):
    from llmos_actors.cli.__main__ import main

    assert main(["keygen", "bob", "--dir", str(tmp_path)]) == 0
    assert (tmp_path / "bob.key").stat().st_mode & 0o777 == 0o600
    assert len((tmp_path / "bob.pub").read_text().strip()) == 40
    assert main(["keygen", "bob", "--dir", str(tmp_path)]) != 0  # never overwritten


def test_plain_tcp_is_never_offered():
    with pytest.raises(llmos.ConfigError, match="plain TCP"):
        llmos.connect("tcp://127.0.0.1:7700")


def test_observers_subscribe_but_never_publish(daemon, keys):
    import time

    from llmos_actors.testing import wait_for

    with daemon.connect() as local, local.subscribe("obs.") as seen, _remote(daemon, keys, "watcher") as watcher:
        before = local.status()["topics"]["refused"]
        with watcher.subscribe("obs.") as theirs:
            deadline = time.monotonic() + 10
            while True:  # an observer may subscribe: it hears what others publish
                local.publish("obs.local", 1)
                try:
                    assert theirs.get(timeout=0.2) == ("obs.local", 1)
                    break
                except TimeoutError:
                    assert time.monotonic() < deadline
            while True:
                try:
                    seen.get(timeout=0.2)
                except TimeoutError:
                    break

            def refused():
                watcher.publish("obs.forged", 2)
                return local.status()["topics"]["refused"] > before

            wait_for(refused, 10, what="the daemon to refuse an observer's publish")
            with pytest.raises(TimeoutError):
                while True:
                    topic, _ = seen.get(timeout=0.3)
                    assert topic != "obs.forged"
