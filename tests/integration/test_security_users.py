"""Two local users: the second cannot reach the first's daemon or its pages.

Runs as root only (it creates the second user, and removes it afterwards); the second
user's side is a forked child that drops to that user's uid and gid before it tries.
Two barriers are shown: the private runtime directory and sockets, and, with those
opened on purpose, the daemon's own checks of the peer's uid.
"""

from __future__ import annotations

import json
import os
import pwd
import socket
import subprocess

import msgpack
import pytest
import zmq

from llmos_actors._wire import protocol as P
from llmos_actors.testing import start_daemon

USER = "llmos-sec-t2"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="creating a second user needs root")


@pytest.fixture(scope="module")
def second_user():
    created = False
    try:
        pwd.getpwnam(USER)
    except KeyError:
        if subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", USER]).returncode:
            pytest.skip("useradd failed")
        created = True
    entry = pwd.getpwnam(USER)
    yield entry.pw_uid, entry.pw_gid
    if created:
        subprocess.run(["userdel", USER], check=False)


@pytest.fixture(scope="module")
def daemon():
    with start_daemon(grace=2.0) as handle:
        yield handle


def as_user(uid: int, gid: int, fn) -> dict:
    """Run ``fn()`` in a forked child as ``uid``/``gid``; returns what it reports (a JSON-able dict)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        os.close(r)
        try:
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            result = fn()
        except BaseException as exc:  # report, never raise in a forked child
            result = {"crash": repr(exc)}
        os.write(w, json.dumps(result).encode())
        os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    return json.loads(data)


def _unix_connect(path: str) -> str:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(3)
    try:
        s.connect(path)
    except OSError as exc:
        return f"refused: {exc.strerror}"
    try:
        s.sendall(b"\x10\x00\x00\x00" + msgpack.packb(["hello", {"pid": os.getpid()}]).ljust(16, b"\xc0"))
        data = s.recv(4096)
        return "answered" if data else "closed by the daemon"
    except OSError as exc:
        return f"closed: {exc.strerror}"
    finally:
        s.close()


def _zmq_hello(endpoint: str) -> str:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect(endpoint)
        sock.send_multipart([P.request_header(P.CALL, 1, "status"), msgpack.packb([[], {}])])
        if not sock.poll(2000):
            return "no answer"
        head, body = sock.recv_multipart()
        if msgpack.unpackb(head)["kind"] == "err":
            return "error: " + msgpack.unpackb(body)["message"]
        return "answered"
    finally:
        sock.close(0)
        ctx.term()


def test_second_user_cannot_reach_the_first_users_daemon(daemon, second_user):
    uid, gid = second_user
    rd = daemon.runtime_dir

    def attempt() -> dict:
        return {"control": _unix_connect(str(rd / "control")), "pages": _unix_connect(str(rd / "pages"))}

    result = as_user(uid, gid, attempt)
    assert result["control"].startswith("refused") and result["pages"].startswith("refused"), result


def test_with_the_directory_opened_the_daemon_still_refuses(daemon, second_user):
    uid, gid = second_user
    rd = daemon.runtime_dir
    modes = {p: p.stat().st_mode & 0o777 for p in (rd.parent, rd, rd / "control", rd / "pages")}
    try:
        os.chmod(rd.parent, 0o755)
        os.chmod(rd, 0o755)
        os.chmod(rd / "control", 0o666)
        os.chmod(rd / "pages", 0o666)

        def attempt() -> dict:
            return {"control": _zmq_hello(daemon.config.endpoint("control")), "pages": _unix_connect(str(rd / "pages"))}

        result = as_user(uid, gid, attempt)
    finally:
        for path, mode in modes.items():
            os.chmod(path, mode)
    assert "has no role" in result["control"], result
    assert result["pages"].startswith("closed"), result  # accepted, then hung up on by the daemon
    with daemon.connect() as k:
        audit = k.status()["security"]
        assert audit["refusals"] >= 1
