"""``systemctl reload llmosd`` (SIGHUP): read the config again and apply what can change live.

Live: the daemon's grace period, spawn timeout, the number of exited actors kept, log
tails, and the ``[scheduler]``, ``[supervisor]`` (default restart limits), ``[sync]``
and ``[state]`` (snapshot_keep, snapshot_timeout) sections. Anything else that changed
(sockets, directories, the pool, preloads, ...) is named in the log as needing a restart
and keeps its running value. A config that does not parse or validate changes nothing.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from ..config import Config
from . import sdnotify
from .restart_policy import DEFAULT_LIMITS, check_limits
from .scheduler import scheduler_settings
from .state.settings import state_settings

log = logging.getLogger(__name__)

#: Top-level keys applied live.
LIVE_FIELDS = ("grace", "spawn_timeout", "keep_exited", "log_tail_lines")
#: ``extra`` sections applied live (each checked by its subsystem first).
LIVE_SECTIONS = ("scheduler", "supervisor", "sync", "state")
#: Keys of the ``[state]`` section that need a restart (the journal is opened once).
STATE_RESTART_KEYS = ("journal", "sync")


def changes(old: Config, new: Config) -> tuple[list[str], list[str]]:
    """Which keys changed: ``(applied live, needing a restart)``."""
    live: list[str] = []
    restart: list[str] = []
    for f in dataclasses.fields(Config):
        if f.name == "extra":
            continue
        if getattr(old, f.name) != getattr(new, f.name):
            (live if f.name in LIVE_FIELDS else restart).append(f.name)
    for section in sorted(set(old.extra) | set(new.extra)):
        before, after = old.extra.get(section), new.extra.get(section)
        if before == after:
            continue
        if section == "state":
            b, a = dict(before or {}), dict(after or {})
            restart += [f"state.{k}" for k in STATE_RESTART_KEYS if b.get(k) != a.get(k)]
            if any(b.get(k) != a.get(k) for k in set(a) | set(b) if k not in STATE_RESTART_KEYS):
                live.append("state")
        elif section in LIVE_SECTIONS:
            live.append(section)
        else:
            restart.append(section)
    return live, restart


def apply(daemon: Any, new: Config) -> dict:
    """Check ``new`` completely, then apply its live changes to ``daemon``; returns what happened.

    Raises:
        ConfigError (or ProtocolError): a section does not validate; nothing was changed.
    """
    old: Config = daemon.config
    live, restart = changes(old, new)
    extra = new.extra
    sched = scheduler_settings(dict(extra))  # validate everything before touching anything
    limits = {**DEFAULT_LIMITS, **check_limits(dict(extra.get("supervisor") or {}), "config section [supervisor]")}
    state = state_settings(extra)
    max_objects = dict(extra.get("sync") or {}).get("max_objects", daemon.sync.max_objects)
    if type(max_objects) is not int or max_objects < 1:
        raise ValueError(f"[sync] max_objects must be an int >= 1, not {max_objects!r}")
    values = {k: getattr(new, k) for k in LIVE_FIELDS}
    kept_extra = {**old.extra, **{k: v for k, v in extra.items() if k in LIVE_SECTIONS and k != "state"}}
    config = dataclasses.replace(old, **values, extra=kept_extra)
    daemon.config = config
    daemon.lifecycle.config = config
    daemon.table.keep_exited = config.keep_exited
    daemon.scheduler.settings = sched
    daemon.scheduler.pools.settings = sched
    daemon.supervision.defaults = limits
    daemon.sync.max_objects = max_objects
    daemon.state.snapshots.store.keep = state.snapshot_keep
    daemon.state.snapshots.timeout = state.snapshot_timeout
    return {"applied": live, "needs_restart": restart}


def reload(daemon: Any, read: Callable[[], Config]) -> dict:
    """SIGHUP: re-read, apply, log; never raises (a bad file is logged and ignored)."""
    sdnotify.notify("RELOADING=1")
    try:
        result = apply(daemon, read())
    except Exception as exc:
        log.error("reload: the config was not applied: %s", exc)
        result = {"error": str(exc)}
    else:
        log.info("reload: applied %s", ", ".join(result["applied"]) or "nothing (no live key changed)")
        if result["needs_restart"]:
            log.warning("reload: these changed but need a restart: %s", ", ".join(result["needs_restart"]))
    finally:
        sdnotify.notify("READY=1")
    daemon.last_reload = result
    return result
