"""The aiohttp application behind ``[metrics] listen``: routes, method policy, SSE, admin actions.

Runs on the daemon's loop; every handler reads daemon state directly (single thread,
no locks). GET and HEAD only, except the admin's kill/restart (``is_admin``: the client's uid, from the
kernel, has the admin role), which also needs an ``X-Llmos-Action`` header that a cross-site
form cannot send.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from importlib import resources
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from .auth import Policy
from .dashboard_state import dashboard_state
from .metrics import KernelCollector
from .peer_uid import loopback_host, loopback_peer_uid

#: Files of the dashboard served under /static/ (nothing else is).
STATIC_FILES = {"app.js": "text/javascript", "style.css": "text/css", "index.html": "text/html"}
READ_METHODS = ("GET", "HEAD")
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:",
}


def is_admin(request: web.Request, settings: dict, policy: Policy) -> bool:
    """Whether this HTTP client may kill and restart actors from the dashboard: the one place that decides.

    All three must hold:

    - ``[metrics] admin = true``: without it the listener has no write action at all;
    - the request names the listener by a loopback host (``Host``: ``127.x.x.x``, ``::1``,
      ``localhost``): a page of another site whose name was rebound to 127.0.0.1 (DNS
      rebinding) names its own host, and is refused;
    - the client's identity has the ``admin`` role under ``[security]`` (the daemon's own
      uid and root always do). HTTP carries no identity the daemon believes, so it is the
      uid owning the client's socket, from the kernel (``peer_uid``): a client that is not
      on loopback has none, and is never admin.
    """
    if not settings.get("admin") or not loopback_host(request.host):
        return False
    transport = request.transport
    if transport is None:
        return False
    uid = loopback_peer_uid(transport.get_extra_info("peername"), transport.get_extra_info("sockname"))
    if uid is None:
        return False
    # The same rule as every daemon socket's: a uid's role (pid and gid unknown here, and unused).
    who = policy.identify(f"loopback:{uid}:0:0", None)
    return who is not None and who.role == "admin"


class MetricsApp:
    """``/metrics``, ``/`` (+ ``/static/*``), ``/api/state``, ``/api/events`` and the admin actions."""

    def __init__(self, daemon: Any, settings: dict, loop_lag: Callable[[], float]) -> None:
        self.daemon = daemon
        self.settings = settings
        self.loop_lag = loop_lag
        self.collector = KernelCollector(daemon, settings["max_actors"], loop_lag)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.collector)
        self.runner: web.AppRunner | None = None
        self.address: tuple[str, int] = (settings["host"], settings["port"])
        self.streams = 0
        self.scrapes = 0
        self._state: dict | None = None
        self._state_at = 0.0

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{host}:{port}/"

    async def start(self) -> None:
        app = web.Application(middlewares=[self._methods], client_max_size=1024)
        app.router.add_get("/metrics", self.h_metrics)
        app.router.add_get("/", self.h_index)
        app.router.add_get("/static/{file}", self.h_static)
        app.router.add_get("/api/state", self.h_state)
        app.router.add_get("/api/events", self.h_events)
        app.router.add_post("/api/actors/{target}/{action}", self.h_action)
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.settings["host"], self.settings["port"])
        await site.start()
        server: Any = site._server  # the bound socket tells the port when 0 was asked for
        if server is not None and server.sockets:
            self.address = server.sockets[0].getsockname()[:2]

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    def status(self) -> dict:
        return {"url": self.url, "scrapes": self.scrapes, "streams": self.streams}

    # ------------------------------------------------------------------ policy
    @web.middleware
    async def _methods(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.method in READ_METHODS:
            return await handler(request)
        if request.method == "POST" and request.path.startswith("/api/actors/") and self.is_admin(request):
            return await handler(request)
        return web.Response(status=405, text="read-only: GET and HEAD only\n", headers={"Allow": "GET, HEAD"})

    # ------------------------------------------------------------------ handlers
    async def h_metrics(self, request: web.Request) -> web.Response:
        self.scrapes += 1
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def h_index(self, request: web.Request) -> web.Response:
        return self._file("index.html")

    async def h_static(self, request: web.Request) -> web.Response:
        name = request.match_info["file"]
        if name not in STATIC_FILES:
            raise web.HTTPNotFound()
        return self._file(name)

    def _file(self, name: str) -> web.Response:
        data = resources.files(__package__).joinpath("dashboard").joinpath(name).read_bytes()
        return web.Response(
            body=data, content_type=STATIC_FILES[name], headers={"Cache-Control": "no-cache", **SECURITY_HEADERS}
        )

    def is_admin(self, request: web.Request) -> bool:
        return is_admin(request, self.settings, self.daemon.policy)

    def state(self, admin: bool) -> dict:
        """The dashboard's state; built at most twice per interval however many pages watch."""
        now = time.monotonic()
        if self._state is None or now - self._state_at >= self.settings["interval"] / 2:
            self._state = dashboard_state(self.daemon, self.settings["max_actors"])
            self._state["daemon"]["loop_lag"] = self.loop_lag()
            self._state_at = now
        return {**self._state, "admin": admin}

    async def h_state(self, request: web.Request) -> web.Response:
        return web.json_response(self.state(self.is_admin(request)))

    async def h_events(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: the dashboard's state every ``interval`` seconds."""
        if self.streams >= self.settings["max_streams"]:
            raise web.HTTPServiceUnavailable(text=f"at most {self.settings['max_streams']} live dashboards\n")
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", **SECURITY_HEADERS}
        )
        await response.prepare(request)
        admin = self.is_admin(request)  # once: the connection's identity does not change
        self.streams += 1
        try:
            while True:
                payload = json.dumps(self.state(admin), separators=(",", ":"), default=str)
                await response.write(f"data: {payload}\n\n".encode())
                await asyncio.sleep(self.settings["interval"])
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.streams -= 1
        return response

    async def h_action(self, request: web.Request) -> web.Response:
        """Admin only (see ``_methods``): kill an actor, or restart it (stop this incarnation)."""
        if request.headers.get("X-Llmos-Action") != "1":
            raise web.HTTPForbidden(text="missing X-Llmos-Action header\n")
        action, target = request.match_info["action"], request.match_info["target"]
        if action not in ("kill", "restart"):
            raise web.HTTPNotFound()
        record = self.daemon.table.by_name.get(target) or self.daemon.table.by_id.get(target)
        if record is None or not record.live:
            raise web.HTTPNotFound(text=f"no live actor {target!r}\n")
        if action == "kill":
            await self.daemon.kill(record, force=False, grace=None)
        else:
            await self.daemon.lifecycle.terminate(record, reason="for a restart from the dashboard")
        return web.json_response({"ok": True, "action": action, "actor": record.label})
