"""The daemon's observability listener: ``/metrics`` (Prometheus) and ``/`` (the live dashboard).

Off unless ``[metrics] listen = "127.0.0.1:9464"`` is set. It runs on the daemon's
own asyncio loop (aiohttp), reads state there (no locks) and does nothing between
requests except a tiny loop-lag probe. Bound to loopback unless ``allow_remote =
true``; it answers GET and HEAD only, except the dashboard's kill/restart actions
for an admin (see ``metrics_app.is_admin``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from typing import Any

from .._rpc.tracing import tracing_settings
from ..errors import ConfigError
from .service import Service

log = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = {
    "listen": None,
    "allow_remote": False,
    "admin": False,
    "max_actors": 200,
    "interval": 1.0,
    "max_streams": 16,
    "timings": None,  # actors' latency histograms: on with listen unless set
}
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
    if out["timings"] is not None and not isinstance(out["timings"], bool):
        raise ConfigError("[metrics] timings must be true or false")
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


def check_sections(extra: Any) -> dict[str, Any]:
    """Check ``[metrics]`` and ``[tracing]`` before the daemon starts; returns the metrics settings.

    Raises:
        ConfigError: naming the bad key.
    """
    try:
        tracing_settings(extra)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return metrics_settings(extra)


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


class MetricsService(Service):
    """The HTTP listener (a daemon service; nothing is imported or run when ``listen`` is unset)."""

    name = "metrics"

    def __init__(self, daemon: Any) -> None:
        self.daemon = daemon
        self.settings = metrics_settings(daemon.config.extra)
        self.app: Any = None
        self._lag = 0.0
        self._lag_task: asyncio.Task | None = None

    async def start(self) -> None:
        if not self.settings["listen"]:
            return
        from .metrics_app import MetricsApp  # aiohttp and prometheus_client: only when serving

        self.app = MetricsApp(self.daemon, self.settings, self.loop_lag)
        await self.app.start()
        self._lag_task = self.daemon.loop.create_task(self._probe_lag())
        log.info("metrics and dashboard at %s", self.app.url)

    async def stop(self) -> None:
        if self._lag_task is not None:
            self._lag_task.cancel()
        if self.app is not None:
            await self.app.stop()
            self.app = None

    def status(self) -> dict:
        return self.app.status() if self.app is not None else {}

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
