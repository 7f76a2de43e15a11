"""The daemon's observability listener: ``/metrics`` (Prometheus) and ``/`` (the live dashboard).

Off unless ``[metrics] listen = "127.0.0.1:9464"`` is set. It runs on the daemon's
own asyncio loop (aiohttp), reads state there (no locks) and does nothing between
requests except a tiny loop-lag probe. Bound to loopback unless ``allow_remote =
true``; it answers GET and HEAD only, except the dashboard's kill/restart actions
for an admin (see ``is_admin``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import time
from importlib import resources
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from ..errors import ConfigError
from .dashboard_state import dashboard_state
from .metrics import KernelCollector
from .service import Service

log = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = {
    "listen": None,
    "allow_remote": False,
    "admin": False,
    "max_actors": 200,
    "interval": 1.0,
    "max_streams": 16,
}
#: Files of the dashboard served under /static/ (nothing else is).
STATIC_FILES = {"app.js": "text/javascript", "style.css": "text/css", "index.html": "text/html"}
READ_METHODS = ("GET", "HEAD")
#: Seconds between the loop-lag probe's wake-ups.
LAG_PROBE = 0.25


def metrics_settings(extra: Any) -> dict[str, Any]:
    """The ``[metrics]`` section, checked.

    Raises:
        ConfigError: unknown keys, a bad ``listen`` address, or a non-loopback one without ``allow_remote``.
    """
    section = dict(extra.get("metrics") or {}) if isinstance(extra, dict) or hasattr(extra, "get") else {}
    unknown = set(section) - set(DEFAULTS)
    if unknown:
        raise ConfigError(f"unknown [metrics] keys: {', '.join(sorted(unknown))} (known: {', '.join(DEFAULTS)})")
    out = {**DEFAULTS, **section}
    for key in ("allow_remote", "admin"):
        if not isinstance(out[key], bool):
            raise ConfigError(f"[metrics] {key} must be true or false")
    if not isinstance(out["max_actors"], int) or not 1 <= out["max_actors"] <= 10_000:
        raise ConfigError("[metrics] max_actors must be an integer from 1 to 10000")
    if not isinstance(out["max_streams"], int) or not 1 <= out["max_streams"] <= 1000:
        raise ConfigError("[metrics] max_streams must be an integer from 1 to 1000")
    if not isinstance(out["interval"], (int, float)) or not 0.05 <= out["interval"] <= 60:
        raise ConfigError("[metrics] interval must be 0.05 to 60 seconds")
    if out["listen"]:
        out["host"], out["port"] = parse_listen(out["listen"], allow_remote=out["allow_remote"])
    return out


def parse_listen(listen: Any, *, allow_remote: bool) -> tuple[str, int]:
    """``"host:port"`` -> (host, port); a host that is not loopback needs ``allow_remote``."""
    if not isinstance(listen, str) or ":" not in listen:
        raise ConfigError(f'[metrics] listen must be "host:port", not {listen!r}')
    host, _, port_s = listen.rpartition(":")
    host = host.strip("[]")
    try:
        port = int(port_s)
    except ValueError:
        raise ConfigError(f"[metrics] listen: {port_s!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"[metrics] listen: port {port} is out of range")
    if host == "localhost":
        loopback = True
    else:
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            raise ConfigError(f"[metrics] listen: {host!r} is not an IP address (or localhost)") from None
    if not loopback and not allow_remote:
        raise ConfigError(
            f"[metrics] listen = {listen!r} is not a loopback address: metrics and the dashboard show every actor; "
            "set allow_remote = true to serve them beyond this host"
        )
    return host, port


def is_admin(request: web.Request, settings: dict) -> bool:
    """Whether this HTTP client may kill and restart actors from the dashboard.

    The one place that decides it: until identities and roles exist, ``[metrics] admin = true``
    turns the buttons on for every client of the (loopback) listener.
    """
    return bool(settings.get("admin"))


class MetricsService(Service):
    """The HTTP listener (a daemon service; nothing runs when ``listen`` is unset)."""

    name = "metrics"

    def __init__(self, daemon: Any) -> None:
        self.daemon = daemon
        self.settings = metrics_settings(daemon.config.extra)
        self.collector = KernelCollector(daemon, self.settings["max_actors"], self.loop_lag)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.collector)
        self.runner: web.AppRunner | None = None
        self.address: tuple[str, int] | None = None
        self.streams = 0
        self.scrapes = 0
        self._lag = 0.0
        self._lag_task: asyncio.Task | None = None

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        if not self.settings["listen"]:
            return
        app = web.Application(middlewares=[self._methods], client_max_size=1024)
        app.router.add_get("/metrics", self.h_metrics)
        app.router.add_get("/", self.h_index)
        app.router.add_get("/static/{file}", self.h_static)
        app.router.add_get("/api/state", self.h_state)
        app.router.add_get("/api/events", self.h_events)
        app.router.add_post("/api/actors/{target}/{action}", self.h_action)
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.settings["host"], self.settings["port"], reuse_address=True)
        await site.start()
        sockets = site._server.sockets if site._server is not None else []  # type: ignore[union-attr]
        self.address = sockets[0].getsockname()[:2] if sockets else (self.settings["host"], self.settings["port"])
        self._lag_task = self.daemon.loop.create_task(self._probe_lag())
        log.info("metrics and dashboard at http://%s:%d/", *self.address)

    async def stop(self) -> None:
        if self._lag_task is not None:
            self._lag_task.cancel()
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    def status(self) -> dict:
        if self.address is None:
            return {}
        host, port = self.address
        return {"url": f"http://{host}:{port}/", "scrapes": self.scrapes, "streams": self.streams}

    # ------------------------------------------------------------------ loop lag
    async def _probe_lag(self) -> None:
        """How late the loop wakes a sleeper: the worst of the last few seconds."""
        worst, window_end = 0.0, time.monotonic() + 5.0
        while True:
            before = time.monotonic()
            await asyncio.sleep(LAG_PROBE)
            late = max(0.0, time.monotonic() - before - LAG_PROBE)
            worst = max(worst, late)
            self._lag = max(self._lag, late)
            if time.monotonic() > window_end:
                self._lag, worst, window_end = worst, 0.0, time.monotonic() + 5.0

    def loop_lag(self) -> float:
        return self._lag

    # ------------------------------------------------------------------ handlers
    @web.middleware
    async def _methods(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.method in READ_METHODS:
            return await handler(request)
        if request.method == "POST" and request.path.startswith("/api/actors/") and is_admin(request, self.settings):
            return await handler(request)
        return web.Response(status=405, text="read-only: GET and HEAD only\n", headers={"Allow": "GET, HEAD"})

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
        data = resources.files(__package__).joinpath("dashboard", name).read_bytes()
        return web.Response(
            body=data, content_type=STATIC_FILES[name], headers={"Cache-Control": "no-cache", **_SECURITY_HEADERS}
        )

    def state(self, request: web.Request) -> dict:
        out = dashboard_state(self.daemon, self.settings["max_actors"])
        out["daemon"]["loop_lag"] = self._lag
        out["admin"] = is_admin(request, self.settings)
        return out

    async def h_state(self, request: web.Request) -> web.Response:
        return web.json_response(self.state(request))

    async def h_events(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: the dashboard's state every ``interval`` seconds."""
        if self.streams >= self.settings["max_streams"]:
            raise web.HTTPServiceUnavailable(text=f"at most {self.settings['max_streams']} live dashboards\n")
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", **_SECURITY_HEADERS}
        )
        await response.prepare(request)
        self.streams += 1
        try:
            while True:
                payload = json.dumps(self.state(request), separators=(",", ":"), default=str)
                await response.write(f"data: {payload}\n\n".encode())
                await asyncio.sleep(self.settings["interval"])
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.streams -= 1
        return response

    async def h_action(self, request: web.Request) -> web.Response:
        """Admin only (see the middleware): kill an actor, or restart it (stop this incarnation)."""
        if request.headers.get("X-Llmos-Action") != "1":  # a cross-site form cannot set it
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


_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'self'; style-src 'self'; img-src 'self' data:",
}
