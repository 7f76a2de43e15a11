"""What a freshly forked actor does to itself before any user code runs.

Own process group, output into the daemon's pipes, CPU affinity, nice value,
environment (``CUDA_VISIBLE_DEVICES`` before anything touches CUDA), and a
lifeline: a thread that kills the actor's whole group the moment the daemon's
end of the lifeline pipe closes, however the daemon died.
"""

from __future__ import annotations

import faulthandler
import io
import logging
import os
import signal
import sys
import threading


def redirect_output(out_fd: int, err_fd: int) -> None:
    """Point fds 1 and 2 at the daemon's capture pipes; line-buffered text streams on top."""
    os.dup2(out_fd, 1)
    os.dup2(err_fd, 2)
    if out_fd > 2:
        os.close(out_fd)
    if err_fd > 2 and err_fd != out_fd:
        os.close(err_fd)
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), line_buffering=True, errors="backslashreplace")
    sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), line_buffering=True, errors="backslashreplace")


def setup_logging(name: str) -> None:
    """Send log records to stderr, where the daemon tags them with the actor's name and pid."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    if root.level == logging.WARNING:
        root.setLevel(logging.INFO)


def apply_placement(cpus: list[int] | None, nice: int | None) -> dict:
    """Pin to ``cpus`` and set the nice value; returns what actually took effect."""
    applied: dict = {}
    if cpus:
        os.sched_setaffinity(0, cpus)
    applied["cpus"] = sorted(os.sched_getaffinity(0))
    if nice is not None:
        try:
            os.setpriority(os.PRIO_PROCESS, 0, nice)
        except OSError as exc:  # lowering nice needs CAP_SYS_NICE: keep what we have
            applied["nice_error"] = f"could not set nice {nice}: {exc.strerror}"
    applied["nice"] = os.getpriority(os.PRIO_PROCESS, 0)
    return applied


def watch_lifeline(fd: int) -> None:
    """Kill this actor's process group when the daemon's end of the lifeline closes."""

    def watch() -> None:
        try:
            while os.read(fd, 1):
                pass
        except OSError:
            pass
        os.killpg(0, signal.SIGKILL)

    threading.Thread(target=watch, name="llmos-lifeline", daemon=True).start()


def prepare(spec: dict, lifeline: int, fds: list[int], *, lifeline_watched: bool = False) -> dict:
    """Everything the child does before the actor runtime starts; returns the placement applied.

    ``lifeline_watched``: a warm process started its watcher while it waited (a thread
    takes milliseconds to start on a busy machine: not on the spawn's path).
    """
    try:
        os.setpgid(0, 0)
    except OSError:
        pass
    if len(fds) >= 2:
        redirect_output(fds[0], fds[1])
    # A crash (e.g. a write to a read-only shared tensor: SIGSEGV) leaves its Python traceback in the log.
    faulthandler.enable(file=sys.stderr)
    for key, value in (spec.get("env") or {}).items():
        os.environ[key] = value
    if not lifeline_watched:
        watch_lifeline(lifeline)
    setup_logging(spec.get("name") or spec.get("id", "actor"))
    return apply_placement(spec.get("cpus"), spec.get("nice"))
