"""Benchmark cases of durable state: recovery after kill -9, and what the journal costs.

Each workload runs its own daemon in the run's private directory (recovery kills it;
the journal on/off pairs need one of each), so the daemon under test is left alone.
"""

from __future__ import annotations

import contextlib
import functools
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..client import connect
from ..errors import LlmosError
from . import actors as bench_actors
from .context import BenchContext
from .ours import SYNC_ROUND, SyncCalls
from .workload import Workload

if TYPE_CHECKING:
    from ..testing import DaemonHandle

#: Actors brought back by ``recovery_ms_100_actors``.
N_RECOVER = 100
#: Seconds all of them may take to answer again (a loaded machine is slow, not broken).
RECOVERY_DEADLINE = 600.0
#: What these daemons' fork servers preload: the actors' module, as a deployment lists its own.
#: Not torch, which these actors do not use: its import (seconds) would add to every daemon start.
PRELOAD = [bench_actors.__name__]


SNAPPY = f"{bench_actors.__name__}:Snappy"


class _Private:
    """A daemon of the workload's own, in the run's private directory."""

    def __init__(self, ctx: BenchContext, tag: str, **settings: Any) -> None:
        self.rdir = Path(ctx.workdir) / tag
        shutil.rmtree(self.rdir.parent / f"{tag}-state", ignore_errors=True)  # start empty, always
        self.settings = {"grace": 2.0, "preload": PRELOAD, **settings}
        self._stack = contextlib.ExitStack()
        self.handle: DaemonHandle = self._start()
        # Our own handle, not the daemon handle's (those close with it): it stays up across restarts.
        self.kernel = connect(config=self.handle.config)

    def _start(self) -> DaemonHandle:
        from ..testing import start_daemon  # not at import: it brings pytest into every CLI command

        return self._stack.enter_context(start_daemon(self.rdir, check_leaks=False, **self.settings))

    def kill9_and_restart(self) -> None:
        """SIGKILL the daemon (its actors die with it) and start it again on the same directories."""
        self.handle.process.kill()
        self.handle.process.wait(10)
        self._stack.close()
        self._stack = contextlib.ExitStack()
        self.handle = self._start()

    def close(self) -> None:
        self.kernel.close()
        self._stack.close()


class Recovery(Workload):
    """kill -9 the daemon; time until each of 100 permanent actors (with snapshots) answers again."""

    max_samples = 5
    warmup = False

    def __init__(self, ctx: BenchContext) -> None:
        self.daemon = _Private(ctx, "recovery")
        try:
            k = self.daemon.kernel
            t0 = time.perf_counter()
            self.refs = [k.spawn(SNAPPY, i, restart="permanent") for i in range(N_RECOVER)]
            self.fresh_s = time.perf_counter() - t0
            for ref in self.refs:
                k.snapshot(ref)
        except BaseException:
            self.daemon.close()
            raise
        self.note = (
            f"{N_RECOVER} actors with ~80 B snapshots, fork server preloading {', '.join(PRELOAD)}; "
            f"spawning them fresh took {self.fresh_s * 1e3:.0f} ms"
        )

    def round(self) -> float:
        from ..testing import wait_for

        t0 = time.perf_counter()
        self.daemon.kill9_and_restart()
        deadline = time.monotonic() + RECOVERY_DEADLINE
        for i, ref in enumerate(self.refs):
            left = max(1.0, deadline - time.monotonic())
            wait_for(functools.partial(_answers, ref, i), left, interval=0.005, what="a recovered actor")
        return time.perf_counter() - t0

    def close(self) -> None:
        self.daemon.close()


def _answers(ref: Any, expected: int) -> bool:
    try:
        return ref.options(timeout=1.0, wait_restart=True).call("ping") == expected
    except LlmosError:
        return False


class FreshSpawns(Workload):
    """Spawn 100 permanent actors (journal on) until each answers; they are stopped between rounds."""

    max_samples = 5
    warmup = False

    def __init__(self, ctx: BenchContext) -> None:
        self.daemon = _Private(ctx, "fresh")
        self.refs: list = []

    def setup(self) -> None:
        k = self.daemon.kernel
        for ref in self.refs:
            with contextlib.suppress(LlmosError):
                k.kill(ref, force=True)
        self.refs = []

    def round(self) -> None:
        k = self.daemon.kernel
        self.refs = [k.spawn(SNAPPY, i, restart="permanent") for i in range(N_RECOVER)]
        for ref in self.refs:
            ref.call("ping")

    def close(self) -> None:
        self.daemon.close()


class JournalSpawns(Workload):
    """``spawn(restart="permanent")`` until the first reply, with the journal on or off."""

    def __init__(self, ctx: BenchContext, journal: bool) -> None:
        self.daemon = _Private(ctx, f"spawn-{'on' if journal else 'off'}", state={"journal": journal})
        self.refs: list = []
        self.note = f"permanent Echo actors, journal {'on (one fsync per spawn)' if journal else 'off'}"

    def round(self) -> None:
        ref = self.daemon.kernel.spawn(bench_actors.Echo, restart="permanent")
        ref.call("ping")
        self.refs.append(ref)

    def close(self) -> None:
        self.daemon.close()


class JournalCalls(SyncCalls):
    """``ref.call`` in a loop against a permanent actor of a daemon with the journal on or off."""

    ops = SYNC_ROUND

    def __init__(self, ctx: BenchContext, journal: bool) -> None:
        self.daemon = _Private(ctx, f"calls-{'on' if journal else 'off'}", state={"journal": journal})
        try:
            self.ref = self.daemon.kernel.spawn(bench_actors.Echo, restart="permanent")
        except BaseException:
            self.daemon.close()
            raise
        self.seq = 0
        self.note = f"ref.call(echo) on a permanent actor, journal {'on' if journal else 'off'}"

    def close(self) -> None:
        self.daemon.close()


def state_cases(case: Any) -> list:
    """The cases, built with the registry's ``Case`` (passed in: the registry imports this module)."""
    return [
        case(
            "recovery_ms_100_actors",
            "ms",
            f"kill -9 the daemon until {N_RECOVER} permanent actors with snapshots answer again (target < 3 s)",
            lambda ctx: Recovery(ctx),
            kind="latency",
            stat="p50",
            samples="rounds",
        ),
        case(
            "spawn_ms_100_actors",
            "ms",
            f"spawn {N_RECOVER} fresh permanent actors until each answers (beside recovery_ms_100_actors)",
            lambda ctx: FreshSpawns(ctx),
            kind="latency",
            stat="p50",
            samples="rounds",
        ),
        *(
            case(
                f"spawn_latency_journal_{tag}",
                "ms",
                f"spawn a permanent actor until its first reply, journal {tag} (on: within 10 % of off)",
                lambda ctx, journal: JournalSpawns(ctx, journal),
                kind="latency",
                stat="p50",
                params={"journal": journal},
            )
            for tag, journal in (("on", True), ("off", False))
        ),
        *(
            case(
                f"calls_sync_journal_{tag}",
                "calls/s",
                f"sync calls to a permanent actor, journal {tag} (the journal is off the call path)",
                lambda ctx, journal: JournalCalls(ctx, journal),
                params={"journal": journal},
            )
            for tag, journal in (("on", True), ("off", False))
        ),
    ]
