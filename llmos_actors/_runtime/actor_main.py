"""The life of one actor process, from fork to exit.

    prepare process -> bind socket -> import class -> __init__ -> on_start
    -> serve (report READY, heartbeat) -> SIGTERM -> on_stop -> exit 0

If the class cannot be imported or ``__init__``/``on_start`` raises, the actor
tells the daemon why (so ``spawn`` raises a clear error) and exits with 1.

Monitors and links are ``links``; what a heartbeat carries, ``heartbeat``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import Any

import zmq

from .._pages.codec import PageArrayCodec
from .._pages.objref import ObjectRef
from .._pages.registry import set_default as set_default_pages
from .._rpc.core import ClientCore
from .._rpc.driver import LoopDriver, new_event_loop
from .._rpc.server import RpcServer, make_router
from .._rpc.tcp import bind_actor_tcp
from .._wire.address import ActorAddress
from .._wire.codec import EXT_OBJREF, EXT_REF, Codec, error_payload
from .._wire.limits import frame_limit
from ..actor import Actor
from ..config import Config
from ..errors import ActorImportError
from . import process
from .executor import ActorExecutor
from .heartbeat import heartbeat_stats
from .links import ActorLinks
from .loader import load_class
from .settings import ExecutorSettings
from .snapshots import ActorSnapshots
from .subscriptions import ActorSubscriptions, declared_subscriptions
from .timings import CallTimings, metrics_enabled

log = logging.getLogger("llmos_actors.actor")

EXIT_OK = 0
EXIT_FAILED = 1


def config_from_dict(data: dict) -> Config:
    values = dict(data)
    for key in ("runtime_dir", "state_dir", "curve_secret_key_file", "curve_authorized_dir", "key_file"):
        if values.get(key) is not None:
            values[key] = Path(values[key])
    values["preload"] = tuple(values.get("preload") or ())
    return Config(**values)


class ActorRuntime(ActorLinks):
    """One actor's process-wide state; ``Actor`` instances reach it as ``_llmos_runtime``."""

    def __init__(self, actor_id: str, spec: dict, config: Config) -> None:
        self.config = config
        self.placement: dict = {}
        self._kernel: Any = None
        self._kernel_async: Any = None
        self._stopping: asyncio.Event | None = None
        self.instance: Any = None
        self.core: ClientCore = None  # type: ignore[assignment]  # set by connect()
        self.executor: ActorExecutor | None = None
        self._monitors: dict[int, str] = {}
        self.snapshots = ActorSnapshots(self)
        #: ``actor_subscribe`` calls made in ``__init__``/``on_start``: live before READY, with the declared ones.
        self._early_subscriptions: list[tuple[str, str]] = []
        #: ``actor_crash``: the failure being reported; the process then ends as failed, answering nothing more.
        self._crash: asyncio.Task | None = None
        self.assign(actor_id, spec)

    def assign(self, actor_id: str, spec: dict) -> None:
        """Which actor this process is (a warm process learns it late)."""
        self.actor_id = actor_id
        self.spec = spec
        self.name = spec.get("name") or actor_id
        self.endpoint = self.config.actor_endpoint(actor_id)
        self.address = ActorAddress(actor_id, spec.get("name") or "", self.endpoint, spec.get("overflow") or "block")

    # ------------------------------------------------------------------ kernel handles
    def kernel(self) -> Any:
        """The synchronous kernel handle (own IO thread, created on first use)."""
        if self._kernel is None:
            from ..client import Kernel

            self._kernel = Kernel(self.config, ctx=self.ctx, lazy=True)
        return self._kernel

    def kernel_async(self) -> Any:
        if self._kernel_async is None:
            from ..client import AsyncKernel

            self._kernel_async = AsyncKernel(self.config, core=self.core)
        return self._kernel_async

    def self_ref(self) -> Any:
        return self.kernel().ref(self.address)

    # ------------------------------------------------------------------ main
    def connect(self, loop: asyncio.AbstractEventLoop) -> None:
        """ZeroMQ context and the daemon connection: done ahead of time by a warm process."""
        self.loop = loop
        self.driver = LoopDriver(loop)
        self.ctx = zmq.Context()
        self.core = ClientCore(self.config, self.driver, lambda a: self.kernel_async().ref(a), ctx=self.ctx)

    async def main(self) -> int:
        loop = asyncio.get_running_loop()
        if self.core is None:
            self.connect(loop)
        self._stopping = asyncio.Event()
        codec = Codec(
            {EXT_REF: lambda p: self.kernel().ref(ActorAddress.from_wire(p)), EXT_OBJREF: ObjectRef.from_wire},
            arrays=PageArrayCodec(self.config.runtime_dir),
        )
        self.server_codec = codec
        set_default_pages(self.config.runtime_dir)  # llmos.empty() in this actor: its daemon's pages
        sock_path = self.config.runtime_dir / "a" / self.actor_id
        try:
            sock_path.unlink()  # a previous incarnation's socket file
        except FileNotFoundError:
            pass
        sock = make_router(self.ctx, self.endpoint, max_bytes=frame_limit(self.config.max_message_bytes))
        self.tcp_endpoint, self.zap = bind_actor_tcp(sock, self.ctx, loop, self.config)
        if self.tcp_endpoint:  # its own ref, handed to another node, is reached there over TCP
            self.address = dataclasses.replace(self.address, tcp=self.tcp_endpoint)
        if self.zap is not None:  # remote callers: checked once per connection, never per call
            self.callers = set(self.spec.get("callers") or ["*"])
            self.zap.allow = lambda key: "*" in self.callers or key in self.callers
            self.core.on_notice("callers", lambda body: setattr(self, "callers", set(body.get("callers") or ())))
        self.server = RpcServer(
            self.driver, sock, codec, self._deliver_early, max_message_bytes=self.config.max_message_bytes
        )
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        try:
            instance = await self._construct(codec)
        except BaseException as exc:
            await self._report_failure(exc)
            await self._shutdown()
            return EXIT_FAILED
        self.instance = instance
        settings = ExecutorSettings.pick(self.spec, type(instance), self.config)
        self.executor = ActorExecutor(self.server, instance, f"actor {self.name!r}", settings)
        self.server.on_request = self.executor
        if metrics_enabled(self.config.extra):
            self.executor.timings = CallTimings()
        if self.core.tracer is not None:
            self.executor.tracer = self.core.tracer
            self.executor.span_prefix = self.name
        self.core.on_notice("linked_exit", lambda body: self._deliver_hook("on_exit", body))
        self.subscriptions = ActorSubscriptions(self, self.executor)
        try:
            early = self.snapshots.subscriptions() + self._early_subscriptions
            await self.subscriptions.start(declared_subscriptions(instance) + early)
        except BaseException as exc:
            await self._report_failure(exc)
            await self._shutdown()
            return EXIT_FAILED
        if self._crash is not None:  # crashed before READY: the spawn fails with the reason
            return await self._crashed()
        self.server.start()
        self.snapshots.listen()  # before READY: a snapshot may be asked for as soon as spawn returns
        await self.kernel_async()._control(
            "actor_ready",
            self.actor_id,
            {
                "pid": os.getpid(),
                "overflow": settings.overflow,
                "trap_exits": bool(getattr(type(instance), "trap_exits", False)),
                "mailbox": settings.mailbox_policy,
                "tcp_endpoint": self.tcp_endpoint,
                **self.placement,
            },
            self.spec.get("token"),
            timeout=self.config.spawn_timeout,
        )
        await self.snapshots.report_restore()
        heartbeat = loop.create_task(self._heartbeat())
        await self._stopping.wait()
        heartbeat.cancel()
        if self._crash is not None:
            return await self._crashed()
        code = await self._stop(instance)
        await self._shutdown()
        return code

    # ------------------------------------------------------------------ subscriptions
    def subscribe(self, prefix: str, method: str) -> None:
        """``Actor.actor_subscribe``: blocks until the subscription is live."""
        if getattr(self, "subscriptions", None) is None:
            self._early_subscriptions.append((prefix, method))
            return
        self.subscriptions.add(prefix, method)
        self.core.tell_daemon("actor_subscribed", self.actor_id, prefix, method)  # kept across restarts

    def _deliver_early(self, req: Any) -> None:  # pragma: no cover - server starts after construction
        raise RuntimeError("request before the actor was constructed")

    async def _construct(self, codec: Codec) -> Any:
        spec = self.spec
        cls = load_class(spec["cls"], spec.get("path"), spec.get("main_file"))
        args, kwargs = codec.unpack(spec.get("args") or b"\x92\x90\x80")
        instance: Any
        if issubclass(cls, Actor):
            # Attributes first, so actor_* work inside __init__.
            instance = cls.__new__(cls)
            instance._llmos_runtime = self
            cls.__init__(instance, *args, **kwargs)
            await self.snapshots.restore(instance, codec)
            result = instance.on_start()
        else:
            instance = cls(*args, **kwargs)
            await self.snapshots.restore(instance, codec)
            on_start = getattr(instance, "on_start", None)
            result = on_start() if callable(on_start) else None
        if asyncio.iscoroutine(result):
            await result
        return instance

    def crash(self, exc: BaseException) -> None:
        """``Actor.actor_crash``, from any thread: report ``exc`` to the daemon, then end the process as failed."""

        def begin() -> None:
            if self._crash is None:
                self._crash = self.loop.create_task(self._report_failure(exc, code="crash"))
                self.request_stop()

        self.loop.call_soon_threadsafe(begin)

    async def _crashed(self) -> int:
        """End a crashed actor: calls in flight stay unanswered, so their callers get ``ActorDiedError``
        with the reported reason from the daemon (a drain would answer them with whatever they raise)."""
        assert self._crash is not None
        await self._crash
        await self._shutdown()
        return EXIT_FAILED

    async def _report_failure(self, exc: BaseException, code: str = "init") -> None:
        if isinstance(exc, ActorImportError):
            payload = error_payload(exc, with_traceback=False)
            payload["traceback"] = exc.remote_traceback
            print(f"cannot start actor: {exc}\n{payload['traceback']}", file=sys.stderr)
        else:
            payload = error_payload(exc)
            payload["code"] = code
            what = "actor __init__/on_start raised" if code == "init" else "actor crashed"
            print(f"{what}:\n{payload['traceback']}", file=sys.stderr)
        try:
            token = self.spec.get("token")
            await self.kernel_async()._control("actor_failed", self.actor_id, payload, token, timeout=5.0)
        except Exception:
            pass

    async def _heartbeat(self) -> None:
        interval = self.config.heartbeat_interval
        while True:
            await asyncio.sleep(interval)
            self._report()

    def _report(self) -> None:
        """Send the counters to the daemon (each second, and once more when stopping)."""
        stats = heartbeat_stats(self.executor, self.driver.stats, self.instance)  # type: ignore[arg-type]
        self.core.tell_daemon("heartbeat", self.actor_id, stats, self.spec.get("token"))

    def request_stop(self) -> None:
        if self._stopping is not None:
            self._stopping.set()

    async def _stop(self, instance: Any) -> int:
        """Stop: drain calls in flight (or cancel them, as the daemon's stop request says), then ``on_stop``."""
        self.subscriptions.close()
        mode = {"drain": True, "grace": self.config.grace}
        try:
            token = self.spec.get("token")
            reply = await self.kernel_async()._control("actor_stopping", self.actor_id, token, timeout=1.0)
            if isinstance(reply, dict):
                mode.update(reply)
        except Exception:  # no daemon to ask: drain with the configured grace
            pass
        drain = bool(mode.get("drain", True))
        grace = float(mode.get("grace") or 0.0)
        # Most of the grace period is for the calls; on_stop gets the rest before SIGKILL.
        await self.executor.drain(grace * 0.8 if drain else 0.0, cancel=not drain)  # type: ignore[union-attr]
        await self.snapshots.at_stop()
        try:
            self._report()  # the last counts: a short-lived actor's calls are not lost to the metrics
        except Exception:
            pass
        try:
            on_stop = getattr(instance, "on_stop", None)
            result = on_stop() if callable(on_stop) else None
            if asyncio.iscoroutine(result):
                await result
        except Exception:
            log.exception("on_stop raised")
        return EXIT_OK

    async def _shutdown(self) -> None:
        if getattr(self, "subscriptions", None) is not None:
            self.subscriptions.close()
        self.server.close()
        zap = getattr(self, "zap", None)
        if zap is not None:
            zap.close()
        self.server_codec.close()
        if self._kernel is not None:
            self._kernel.close()
        if self.core is not None:
            if self.core.tracer is not None:
                self.core.tracer.shutdown()  # export what is left before the process exits
            self.core.close()
        self.ctx.term()


def run_actor(actor_id: str, spec: dict, config: dict, lifeline: int, fds: list[int]) -> int:
    """Entry point in the forked child (called by the fork server). Returns the exit code."""
    runtime = ActorRuntime(actor_id, spec, config_from_dict(config))
    runtime.placement = process.prepare({**spec, "id": actor_id}, lifeline, fds)
    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    return _run(runtime, loop)


def _run(runtime: ActorRuntime, loop: asyncio.AbstractEventLoop) -> int:
    try:
        return loop.run_until_complete(runtime.main())
    except BaseException:
        traceback.print_exc()
        return EXIT_FAILED


def run_warm(assignment: Any, config: dict, lifeline: int) -> int:
    """A pre-forked ("warm") actor process: get ready, then wait for an actor to become.

    Everything that does not depend on which actor it will be happens before the
    assignment arrives: the event loop, the ZeroMQ context, the connection to the
    daemon and the lifeline watcher. ``assignment()`` blocks until the fork server hands over ``(id, spec,
    fds)``, or returns None when there is nothing to become (then exit quietly).
    Placement (affinity, nice, ``CUDA_VISIBLE_DEVICES``) is applied after the
    assignment, before any user code runs.
    """
    cfg = config_from_dict(config)
    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    runtime = ActorRuntime("", {}, cfg)
    runtime.connect(loop)
    process.watch_lifeline(lifeline)  # the daemon's death ends a warm process too
    job = assignment()
    if job is None:
        assert runtime.core is not None
        runtime.core.close()
        runtime.ctx.term()
        return EXIT_OK
    actor_id, spec, fds = job
    runtime.assign(actor_id, spec)
    runtime.placement = process.prepare({**spec, "id": actor_id}, lifeline, fds, lifeline_watched=True)
    return _run(runtime, loop)
