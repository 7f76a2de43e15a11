"""The few Linux process controls Python does not wrap: prctl death signals and subreaping."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36

_libc = None


def _prctl(option: int, arg: int) -> bool:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    return _libc.prctl(option, arg, 0, 0, 0) == 0


def set_pdeathsig(sig: int = signal.SIGKILL) -> bool:
    """Have the kernel send ``sig`` to this process when its parent thread dies."""
    return _prctl(PR_SET_PDEATHSIG, int(sig))


def set_child_subreaper() -> bool:
    """Adopt orphaned descendants (actors whose fork server died) so we can reap them."""
    return _prctl(PR_SET_CHILD_SUBREAPER, 1)


def describe_status(status: int) -> tuple[int | None, int | None]:
    """``(exitcode, signal)`` from a ``waitpid`` status."""
    if os.WIFSIGNALED(status):
        return None, os.WTERMSIG(status)
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status), None
    return None, None


def signal_name(signum: int | None) -> str:
    if not signum:
        return ""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"
