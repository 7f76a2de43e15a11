"""What every workload gets: the daemon to use, how long to measure, where peers put sockets."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..client import Kernel
from ..config import Config
from .workload import QUICK, Timing

if TYPE_CHECKING:
    from ..refs import ActorRef
    from .ray_session import RaySession

log = logging.getLogger(__name__)


@dataclass
class BenchContext:
    """The shared state of one benchmark run.

    Attributes:
        kernel: a connected handle on the daemon under test.
        config: that daemon's config (its runtime dir, message limits).
        timing: how long to measure.
        workdir: a private directory for the peers' ``ipc://`` endpoints and files.
        status: the daemon's ``status()`` at the start of the run (features it serves).
        ray: the Ray driver process, started on first use by a Ray peer (None: not configured).
        named: the cases were named on the command line (``--quick`` then runs them all).
    """

    kernel: Kernel
    config: Config
    timing: Timing
    workdir: Path
    status: dict = field(default_factory=dict)
    ray: RaySession | None = None
    named: bool = False

    @property
    def quick(self) -> bool:
        return self.timing == QUICK

    def ipc(self, name: str) -> str:
        """An ``ipc://`` endpoint in the run's private directory."""
        return f"ipc://{self.workdir / name}"


class Actors:
    """Actors spawned by one workload, killed together when it closes.

    With a shared daemon (``--runtime-dir``) the benchmark must leave everything
    else alone: it only ever kills what it spawned here.
    """

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.refs: list[ActorRef] = []

    def spawn(self, cls: Any, *args: Any, **options: Any) -> ActorRef:
        ref = self.kernel.spawn_with(cls, args, {}, **options)
        self.refs.append(ref)
        return ref

    @contextlib.contextmanager
    def on_error_close(self) -> Iterator[Actors]:
        """For a workload's ``__init__``: if setting up fails, kill what was spawned so far."""
        try:
            yield self
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        refs, self.refs = self.refs, []
        for ref in refs:
            with contextlib.suppress(Exception):
                self.kernel.kill(ref, force=True)

    def __iter__(self) -> Iterator[ActorRef]:
        return iter(self.refs)
