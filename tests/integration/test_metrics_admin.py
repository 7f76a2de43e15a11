"""Who may use the dashboard's kill and restart: the uid owning the HTTP client's socket, from the kernel,
with the admin role under ``[security]``; never a request that names another host."""

from __future__ import annotations

import http.client
import json
import os
import socket

import pytest

pytest.importorskip("aiohttp")

from llmos_actors.testing import start_daemon, wait_for
from tests.actors import Counter

ADMIN_METRICS = {"listen": "127.0.0.1:0", "admin": True}
NOBODY = 65534
ACTION = {"X-Llmos-Action": "1"}


def request(url: str, method: str, path: str, headers: dict | None = None) -> tuple[int, bytes]:
    host, port = url.removeprefix("http://").rstrip("/").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def raw_request(url: str, method: str, path: str, headers: dict | None = None) -> tuple[int, bytes]:
    """HTTP/1.1 over a plain socket: what a child that lost access to the interpreter's lazy imports
    (the stdlib under another user's home) can still do."""
    host, port = url.removeprefix("http://").rstrip("/").split(":")
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: close", "Content-Length: 0"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    with socket.socket(socket.AF_INET) as sock:  # (not create_connection: its name lookup loads a codec)
        sock.settimeout(10)
        sock.connect((host, int(port)))
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def request_as(uid: int, url: str, method: str, path: str, headers: dict | None = None) -> tuple[int, bytes]:
    """``raw_request`` from a forked child that became ``uid`` before opening its socket (the kernel
    records a socket's owner when it is created)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no exec, nothing but the request, then _exit
        code = 1
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            status, body = raw_request(url, method, path, headers)
            os.write(write_end, b"%d %s" % (status, body))
            code = 0
        except BaseException as exc:
            os.write(write_end, repr(exc).encode())
        finally:
            os._exit(code)
    os.close(write_end)
    exited: list[int] = []

    def child_exited() -> bool:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            exited.append(os.waitstatus_to_exitcode(status))
        return bool(done)

    with os.fdopen(read_end, "rb") as pipe:
        try:
            wait_for(child_exited, timeout=30, what="the request made as another uid")
        finally:
            if not exited:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
        out = pipe.read()
    assert exited == [0], f"the child could not make its request: {out!r}"
    status, _, body = out.partition(b" ")
    return int(status), body


def admin_flag(status_body: tuple[int, bytes]) -> bool:
    status, body = status_body
    assert status == 200
    return json.loads(body)["admin"]


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="acting as another uid needs root")


@needs_root
@pytest.mark.parametrize("role", [None, "user", "observer"])
def test_a_uid_without_the_admin_role_cannot_kill_or_restart(role: str | None) -> None:
    roles = {f"uid:{NOBODY}": role} if role else {}
    with start_daemon(metrics=ADMIN_METRICS, security={"roles": roles}) as d, d.connect() as kernel:
        url = kernel.status()["metrics"]["url"]
        kernel.spawn(Counter, name="kept")
        assert admin_flag(request_as(NOBODY, url, "GET", "/api/state")) is False  # no buttons shown
        for action in ("kill", "restart"):
            assert request_as(NOBODY, url, "POST", f"/api/actors/kept/{action}", ACTION)[0] == 405
        assert kernel.lookup("kept").call("get") == 0  # untouched
        assert admin_flag(request(url, "GET", "/api/state")) is True  # the daemon's own uid is admin
        kernel.kill("kept")


@needs_root
def test_a_uid_given_the_admin_role_may() -> None:
    roles = {f"uid:{NOBODY}": "admin"}
    with start_daemon(metrics=ADMIN_METRICS, security={"roles": roles}) as d, d.connect() as kernel:
        url = kernel.status()["metrics"]["url"]
        kernel.spawn(Counter, name="doomed")
        assert admin_flag(request_as(NOBODY, url, "GET", "/api/state")) is True
        assert request_as(NOBODY, url, "POST", "/api/actors/doomed/kill", ACTION)[0] == 200
        wait_for(lambda: not any(r["name"] == "doomed" and r["state"] != "exited" for r in kernel.ps()), what="killed")


def test_a_request_naming_another_host_is_never_admin() -> None:
    """A page of another site whose name resolves to 127.0.0.1 (DNS rebinding) sends its own Host."""
    with start_daemon(metrics=ADMIN_METRICS) as d, d.connect() as kernel:
        url = kernel.status()["metrics"]["url"]
        port = url.rstrip("/").rsplit(":", 1)[1]
        kernel.spawn(Counter, name="guarded")
        rebound = {"Host": f"attacker.example:{port}"}
        assert admin_flag(request(url, "GET", "/api/state", rebound)) is False
        assert request(url, "POST", "/api/actors/guarded/kill", {**ACTION, **rebound})[0] == 405
        for host in (f"localhost:{port}", f"127.0.0.1:{port}"):
            assert admin_flag(request(url, "GET", "/api/state", {"Host": host})) is True
        assert kernel.lookup("guarded").call("get") == 0
        kernel.kill("guarded")


def test_without_the_admin_switch_nobody_is_admin() -> None:
    with start_daemon(metrics={"listen": "127.0.0.1:0"}) as d, d.connect() as kernel:
        url = kernel.status()["metrics"]["url"]
        kernel.spawn(Counter, name="safe")
        assert admin_flag(request(url, "GET", "/api/state")) is False
        assert request(url, "POST", "/api/actors/safe/kill", ACTION)[0] == 405
        kernel.kill("safe")
