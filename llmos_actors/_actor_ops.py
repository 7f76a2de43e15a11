"""The actor operations of a kernel handle: spawn, lookup, kill, grant, ps and logs.

A mixin of ``KernelOps`` (``client.py``), written once as ``@operation`` methods: ``Kernel``
runs them blocking, ``AsyncKernel`` awaits them. Each returns refs of the caller's flavour.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import _spawnspec
from ._ops import Surface, operation
from ._wire.address import ActorAddress
from .config import Config
from .supervision import target_id


def _addr(reply: dict) -> ActorAddress:
    return ActorAddress.from_dict(reply)


class ActorOps(Surface):
    """Starting, finding, stopping and sharing actors; their listing and captured output."""

    config: Config
    _core: Any  # the handle's ClientCore (its codec packs constructor arguments)
    ref: Callable[[ActorAddress], Any]  # a ref of the handle's flavour

    @operation
    def spawn(self, cls: Any, /, *args: Any, **kwargs: Any) -> Any:
        """Start an actor in its own process and return a ref once it is ready.

        Args:
            cls: an actor class (importable: defined at module level) or ``"module:Class"``.
            *args: constructor arguments.
            **kwargs: constructor keyword arguments, except the spawn options
                ``name``, ``cpus`` (list of cores, a count, or ``"auto"``), ``gpus``,
                ``priority`` (0..7), ``restart`` (a policy name or a ``RestartPolicy``),
                ``exclusive``, ``max_concurrency``, ``mailbox_size``, ``overflow``, ``env``
                and ``supervisor``. Use ``spawn_with`` to pass constructor keywords of those names.

        Raises:
            ActorImportError: the daemon cannot import the class.
            ActorDiedError: the actor exited before it was ready (``__init__`` raised, ...).
            ResourceUnavailable: cores or GPUs asked for are not available.
            NameTaken: a live actor already has that name.
        """
        options = {k: kwargs.pop(k) for k in _spawnspec.SPAWN_OPTIONS if k in kwargs}
        return (yield from ActorOps.spawn_with(self, cls, args, kwargs, **options))

    @operation
    def spawn_with(self, cls: Any, args: tuple | list = (), kwargs: dict | None = None, **options: Any) -> Any:
        """``spawn`` with the constructor arguments given explicitly (no name clashes)."""
        request = _spawnspec.build_spawn_request(self._core.codec, cls, tuple(args), kwargs or {}, options)
        reply = yield self._daemon("spawn", request, timeout=self.config.spawn_timeout + 5)
        return self.ref(_addr(reply))

    @operation
    def lookup(self, name: str) -> Any:
        """The ref of the actor with this name (or id).

        Raises:
            ActorNotFound: no such actor is known.
        """
        return self.ref(_addr((yield self._daemon("lookup", name))))

    @operation
    def kill(self, ref_or_name: Any, *, force: bool = False, grace: float | None = None, drain: bool = True) -> Any:
        """Stop an actor for good (SIGTERM, then SIGKILL after ``grace``; at once with ``force``).

        Its supervisor does not restart it. With ``drain=True`` the actor stops taking
        calls and lets running and queued ones finish within the grace period; with
        ``drain=False`` queued calls fail at once and running ``async`` ones are
        cancelled. Either way, what is left fails with ``ActorDiedError`` (threads
        cannot be interrupted: they are cut off when the process exits).

        Returns its exit record once it has exited.
        """
        grace = self.config.grace if grace is None else grace
        target = target_id(ref_or_name)
        return (yield self._daemon("kill", target, force=force, grace=grace, drain=drain, timeout=grace + 10))

    @operation
    def grant(self, ref_or_name: Any, identity: str) -> Any:
        """Let ``identity`` call an actor of yours: ``"key:<name>"`` (a TCP client's key) or ``"uid:<n>"``.

        Its owner (or an admin) may grant; the grant lasts as long as the actor (restarts and
        daemon restarts included). It lets the other call the actor, never kill it.

        Raises:
            PermissionDenied: the actor is not yours to share.
        """
        return (yield self._daemon("grant", target_id(ref_or_name), identity))

    @operation
    def ps(self, *, exited: bool = True) -> Any:
        """One dict per actor: id, name, pid, state, cpus, priority, nice, counters, exit record."""
        return (yield self._daemon("ps", exited=exited))

    @operation
    def logs(self, name: Any, *, lines: int = 100, offset: int | None = None) -> Any:
        """Captured output of an actor: ``{"lines": [...], "offset": n, "path": ...}``."""
        return (yield self._daemon("logs", target_id(name), lines=lines, offset=offset))
