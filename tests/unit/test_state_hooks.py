"""Snapshot hooks are the framework's: never callable by name from a client."""

from __future__ import annotations

import sys
from pathlib import Path

from llmos_actors._runtime.methods import public_method_resolver

sys.path.insert(0, str(Path(__file__).parent.parent))

from state_actors import Keeper


def test_snapshot_hooks_are_not_remote_methods() -> None:
    resolve = public_method_resolver(Keeper())
    assert resolve("on_snapshot") is None and resolve("on_restore") is None
    assert resolve("incr") is not None
