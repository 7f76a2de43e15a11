"""Who may call an actor, and who owns it after the daemon restarts.

One daemon listening on loopback with two user keys, ``alice`` and ``bob`` (role user, may
spawn test actors); its journal lives across a restart in the same directories.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

import llmos_actors as llmos
from llmos_actors.keys import generate_keypair
from llmos_actors.testing import DaemonHandle, free_tcp_ports, short_tmpdir, start_daemon, wait_for

from actors import Counter


@pytest.fixture
def base() -> Iterator[Path]:
    path = short_tmpdir("llmos-callers-")
    authorized = path / "authorized"
    authorized.mkdir(mode=0o700)
    for name in ("alice", "bob"):
        _secret, public = generate_keypair(name, path / "client")
        shutil.copy(public, authorized / f"{name}.pub")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def tcp_daemon(base: Path) -> Iterator[DaemonHandle]:
    port = free_tcp_ports(3)
    with start_daemon(
        base / "rt",
        grace=2.0,
        connect_timeout=2.0,
        network={
            "listen": [f"tcp://127.0.0.1:{port}"],
            "authorized_keys": str(base / "authorized"),
            "server_key": str(base / "server.key"),
        },
        security={"user_modules": ["actors"]},
    ) as handle:
        handle.url = f"tcp://127.0.0.1:{port}"
        local = handle.connect()
        wait_for(lambda: local.status()["state"].get("recovering") is False, 60, what="recovery")
        yield handle


def remote(handle: DaemonHandle, base: Path, name: str) -> llmos.Kernel:
    return llmos.connect(handle.url, key=base / "client" / f"{name}.key", server_key=str(base / "server.pub"))


def test_a_user_calls_its_own_actors_and_those_it_is_granted(base: Path) -> None:
    with tcp_daemon(base) as daemon, remote(daemon, base, "alice") as alice, remote(daemon, base, "bob") as bob:
        ref = alice.spawn(Counter, name="alices")
        assert ref.call("incr") == 1
        with pytest.raises(llmos.PermissionDenied, match="belongs to key:alice"):
            bob.lookup("alices")
        with pytest.raises(llmos.PermissionDenied, match="belongs to key:alice"):
            bob.grant("alices", "key:bob")  # only its owner (or an admin) grants
        alice.grant(ref, "key:bob")
        theirs = bob.lookup("alices")
        assert theirs.options(timeout=10).call("incr") == 2
        with pytest.raises(llmos.PermissionDenied):
            bob.kill("alices")  # a grant lets it call, not kill
        assert ref.call("incr") == 3


def test_a_refused_key_cannot_complete_the_handshake_with_the_actor(base: Path) -> None:
    """The actor itself refuses the connection (its ZAP handler), whatever address the caller has."""
    with tcp_daemon(base) as daemon, remote(daemon, base, "alice") as alice, remote(daemon, base, "bob") as bob:
        ref = alice.spawn(Counter, name="alices")
        forged = bob.ref(ref.address)  # an address learnt some other way: no daemon in between
        with pytest.raises(llmos.CallTimeout):
            forged.options(timeout=1.5).call("incr")
        assert ref.call("incr") == 1  # nothing reached it


def test_ownership_survives_a_daemon_restart(base: Path) -> None:
    with tcp_daemon(base) as daemon, remote(daemon, base, "alice") as alice:
        alice.spawn(Counter, name="kept", restart="permanent")
        alice.spawn(Counter, name="granted", restart="permanent")
        alice.grant("granted", "key:bob")
    with tcp_daemon(base) as daemon, remote(daemon, base, "alice") as alice, remote(daemon, base, "bob") as bob:
        wait_for(lambda: {"kept", "granted"} <= {r["name"] for r in alice.ps()}, 30, what="recovered actors")
        with pytest.raises(llmos.PermissionDenied, match="belongs to key:alice"):
            bob.kill("kept")
        assert bob.lookup("granted").options(timeout=10).call("incr") == 1
        alice.kill("kept")  # still hers: recovered actors keep their owner
        alice.kill("granted")
