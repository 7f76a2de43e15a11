"""The kernel daemon (``llmos daemon``): a composition of its parts, started and stopped in order.

runtime dir (0700, instance lock) -> control socket -> fork server -> READY=1
... serve ...
SIGTERM/SIGINT -> STOPPING=1 -> actors (grace, then SIGKILL) -> fork server -> sockets removed

The runtime directory and its lock are ``rundir``; reaping our own children, ``children``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zmq

from .._pages.settings import settings_from
from .._rpc.driver import LoopDriver, new_event_loop
from .._rpc.server import RpcServer, make_router
from .._version import __version__
from .._wire.codec import Codec
from .._wire.limits import frame_limit
from ..config import CONTROL_SOCKET, Config, apply_gc_threshold
from . import linux, sdnotify
from .audit import Audit
from .auth import Policy
from .children import ChildWatcher
from .cluster_objects import ClusterObjects
from .control import ControlService
from .eventbus import EventBus
from .lifecycle import Lifecycle
from .logs import LogCollector
from .metrics_http import MetricsService, check_sections
from .monitors import Monitors
from .network import Network
from .pages_service import PagesService
from .proctable import ActorRecord, ProcessTable
from .quotas import Limits, Quotas
from .reload import reload
from .resources import Inventory
from .rundir import prepare_runtime_dir, release_lock, remove_runtime_files, remove_stale_sockets, take_lock
from .scheduler import Scheduler, scheduler_settings
from .service import Services
from .state.service import StateService
from .state.settings import open_journal
from .supervisor import Supervision
from .syncobjects import SyncObjects
from .topic_relay import TopicRelay
from .usage import UsageSampler
from .zygote_link import ZygoteLink

log = logging.getLogger(__name__)


def config_as_dict(config: Config) -> dict:
    out = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        out[f.name] = str(value) if isinstance(value, Path) else (list(value) if isinstance(value, tuple) else value)
    out["extra"] = dict(config.extra)
    return out


class Daemon:
    """The kernel: process table, inventory, fork server, logs and the control service."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.started = time.time()
        self._stop: asyncio.Event | None = None
        self._lifeline_w: int | None = None
        self._lifeline_r: int | None = None
        self.usage = UsageSampler()
        self.services = Services()
        #: Reads the config again (SIGHUP); set by ``run_daemon`` when it knows where the config came from.
        self.read_config: Callable[[], Config] | None = None

    # ------------------------------------------------------------------ running
    async def run(self) -> int:
        """Serve until SIGTERM/SIGINT; returns the process exit code."""
        config = self.config
        loop = asyncio.get_running_loop()
        self.loop = loop
        self._stop = asyncio.Event()
        # Subsystems' config sections are theirs to check: before anything starts, not halfway.
        scheduler_settings(dict(config.extra))
        settings_from(config.extra, config.state_dir)
        self.policy = Policy.from_config(config.extra.get("security"))
        self.limits = Limits.from_config(config.extra.get("limits"))
        self.quotas = Quotas(self.limits)
        self.audit = Audit()
        check_sections(config.extra)  # [metrics], [tracing]
        prepare_runtime_dir(config.runtime_dir)
        lock = take_lock(config.runtime_dir)
        try:
            self.journal = open_journal(config)  # a corrupt journal stops us here, naming the file
            await self._start(loop)
            sdnotify.notify(f"READY=1\nSTATUS=serving {config.runtime_dir}\nMAINPID={os.getpid()}")
            log.info("llmos daemon %s ready at %s (pid %d)", __version__, config.runtime_dir, os.getpid())
            await self._stop.wait()
            sdnotify.notify("STOPPING=1")
            log.info("stopping: %d live actor(s)", len(self.table.live()))
            await self._shutdown()
        finally:
            release_lock(config.runtime_dir, lock)
        return 0

    async def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        config = self.config
        remove_stale_sockets(config.runtime_dir)
        linux.set_child_subreaper()
        self.children = ChildWatcher(loop, self._child_exited)
        # The lifeline: actors die when its write end (held only here) closes.
        self._lifeline_r, self._lifeline_w = os.pipe()
        self.driver = LoopDriver(loop)
        self.ctx = zmq.Context()
        # An exited actor's log goes when the process table forgets it (``keep_exited``): a
        # daemon that outlives many short-lived actors keeps a bounded number of files.
        self.table = ProcessTable(config.keep_exited, on_forget=self._forget_logs)
        self.inventory = Inventory()
        self.inventory.detect_gpus()
        echo = config.log_to_stderr if config.log_to_stderr is not None else bool(os.environ.get("JOURNAL_STREAM"))
        config.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.logs = LogCollector(
            loop, config.state_dir, max_bytes=config.log_max_bytes, backups=config.log_backups, echo=echo
        )
        self.zygote = ZygoteLink(loop, config_as_dict(config), self._lifeline_r, self._on_zygote_reaped)
        sock = make_router(
            self.ctx,
            config.endpoint(CONTROL_SOCKET),
            max_bytes=self.limits.max_frame_bytes or frame_limit(config.max_message_bytes),
            send_queue=self.limits.send_queue,
        )
        self.server = RpcServer(
            self.driver, sock, Codec(), lambda req: None, max_message_bytes=config.max_message_bytes, identify=True
        )
        self.control = ControlService(self, self.server)
        # The event bus comes first: the lifecycle publishes on it from its first spawn.
        self.events = EventBus(self.ctx, config, loop)
        self.lifecycle = Lifecycle(
            config,
            loop,
            self.table,
            self.inventory,
            self.zygote,
            self.logs,
            self._announce_exit,
            events=self.services,
            publish=self.events.publish,
        )
        self.lifecycle.callers = self.control.callers  # who each actor's TCP endpoint lets call it
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        if self.read_config is not None:  # systemctl reload: re-read the config, apply what can change live
            loop.add_signal_handler(signal.SIGHUP, lambda: reload(self, self.read_config))  # type: ignore[arg-type]
        await self.zygote.start()
        self.children.watch(self.zygote.pid)  # type: ignore[arg-type]
        self._build_services()
        for service in self.services:
            for name, handler in service.handlers().items():
                self.control.add(name, handler)
            await service.start()
        self.server.start()

    def _build_services(self) -> None:
        """The daemon's subsystems, started in this order and stopped in reverse.

        Each is built from what it uses; actor events (new records, restart decisions,
        notices, exits, clients gone) reach it through ``Services`` by its ``on_*`` hooks.
        """
        add, extra, publish = self.services.add, self.config.extra, self.events.publish
        self.pages = add(PagesService(self.config, self._actor_name))
        add(self.events)
        self.supervision = add(
            Supervision(self.lifecycle, self.table, extra.get("supervisor"), loop=self.loop, publish=publish)
        )
        self.monitors = add(Monitors(self.table, self.lifecycle, self.server))
        self.sync = add(SyncObjects(self.loop, extra.get("sync")))
        self.scheduler = add(
            Scheduler(self.config, self.loop, self.ctx, self.table, self.inventory, self.lifecycle, publish, self.spawn)
        )
        self.network = add(Network(self))
        # Topics to and from the cluster's other nodes (off outside a cluster).
        self.relay = add(TopicRelay(self.ctx, self.loop, self.events, self.network, extra.get("cluster"), self.config))
        add(ClusterObjects(self.pages, self.relay))  # other nodes' stored objects, fetched once
        self.audit.publish = publish
        self.events.audit = self.audit
        self.events.may = self.policy.topic_verdict
        self.events.max_prefixes = self.limits.subscriptions
        self.events.max_subscribers = self.limits.subscribers
        self.sync.max_waiters = self.limits.waiters
        self.pages.limits = self.limits
        self.metrics = add(MetricsService(self))  # reads the others at scrape time; off unless [metrics] listen
        self.state = add(StateService(self))  # last: it wraps the others' handlers and replays the journal

    def stop(self) -> None:
        """Ask the daemon to shut down (signal handlers call this)."""
        if self._stop is not None:
            self._stop.set()

    async def _shutdown(self) -> None:
        for record in self.table.live():
            record.wanted_down = True  # nothing restarts from here on
        await self.supervision.shutdown(self.config.grace)  # trees: reverse start order
        await self.lifecycle.stop_all(self.config.grace)
        for service in reversed(self.services):
            try:
                await service.stop()
            except Exception:  # the others still get to stop
                log.exception("stopping %s failed", service.name)
        await self.zygote.stop()
        self.server.close()
        self.ctx.term()
        self.logs.close()
        if self._lifeline_w is not None:
            os.close(self._lifeline_w)
            os.close(self._lifeline_r)  # type: ignore[arg-type]
        remove_runtime_files(self.config.runtime_dir)

    # ------------------------------------------------------------------ children
    def _child_exited(self, pid: int, status: int | None) -> None:
        if pid == self.zygote.pid:
            self.zygote.exited(status if status is not None else -1)
            # Its actors are ours now (we are their subreaper): watch them directly.
            for record in self.table.live():
                if record.pid:
                    self.children.watch(record.pid)
        else:
            self.lifecycle.reaped(pid, status if status is not None else 0)

    def _on_zygote_reaped(self, pid: int, status: int) -> None:
        self.lifecycle.reaped(pid, status)

    def _forget_logs(self, record: Any) -> None:
        if not self.table.has_label(record.label):  # a newer actor of that name keeps the file
            self.logs.forget(record.label)

    def _announce_exit(self, record: ActorRecord, notice: dict) -> None:
        """Death (and restart) notices: to watchers (their connections), then to the services."""
        self.control.notify_watchers(record, notice)
        if notice.get("event") == "exited" and not notice.get("restarting"):
            record.watchers.clear()
        self.services.actor_notice(record, notice)

    # ------------------------------------------------------------------ operations
    async def spawn(self, request: dict, owner: str = "daemon", *, actor_id: str | None = None) -> ActorRecord:
        self.services.check_spawn(request)  # any service may refuse it before it forks
        return await self.lifecycle.spawn(request, owner, actor_id=actor_id)

    async def kill(self, record: ActorRecord, *, force: bool, grace: float | None, drain: bool = True) -> dict:
        return await self.lifecycle.kill(record, force=force, grace=grace, drain=drain)

    def client_gone(self, ident: bytes) -> None:
        """A client handle closed (it said goodbye): services drop what it left behind."""
        self.services.client_gone(ident)

    def add_usage(self, rows: list[dict]) -> None:
        """Add live CPU% and RSS (psutil) and the scheduler's notes to ``ps`` rows."""
        self.scheduler.annotate(rows)
        for row in rows:
            if row["state"] != "exited" and row.get("pid"):
                topic_drops = self.events.drops_of(f"actor:{row['id']}")
                if topic_drops:
                    row["stats"]["topic_drops"] = row["stats"].get("topic_drops", 0) + topic_drops
        self.usage.annotate(rows)

    def _actor_name(self, pid: int) -> str | None:
        record = self.table.by_pid.get(pid)
        return record.label if record is not None else None

    def status(self) -> dict:
        config = self.config
        spawn_times = sorted(self.lifecycle.spawn_times)
        info = {
            "version": __version__,
            "pid": os.getpid(),
            "uptime": time.time() - self.started,
            "runtime_dir": str(config.runtime_dir),
            "state_dir": str(config.state_dir),
            "instance": config.instance,
            "actors": self.table.counts(),
            "inventory": self.inventory.describe(),
            "fork_server": self.zygote.describe(),
            "counters": dict(self.driver.stats),
            "spawn_ms_p50": round(spawn_times[len(spawn_times) // 2] * 1000, 2) if spawn_times else None,
            "security": {**self.audit.status(), **self.quotas.status()},
            "last_reload": getattr(self, "last_reload", None),
        }
        for service in self.services:
            section = service.status()
            if section:
                info[service.name] = section
        return info


def run_daemon(config: Config, read_config: Callable[[], Config] | None = None) -> int:
    """Run a daemon in this process until it is told to stop (what ``llmos daemon`` does).

    Args:
        read_config: builds the config again from its sources (on SIGHUP).
    """
    os.umask(0o077)  # sockets, logs and keys are the daemon's user's alone
    apply_gc_threshold(config.gc_threshold)
    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    daemon = Daemon(config)
    daemon.read_config = read_config
    try:
        return loop.run_until_complete(daemon.run())
    finally:
        loop.close()
