"""Who is asking: identities established from the transport, roles, and what each role may do.

The daemon never believes a name, pid or owner written in a message. On unix sockets
the kernel tells libzmq the peer's uid and pid (``SO_PEERCRED``; pyzmq exposes it as the
frame property ``Peer-Address``, ``host:uid:gid:pid``); over TCP the CurveZMQ handshake
proves the client's key and the ZAP handler names it (``User-Id``, ``key:<name>``).

Roles (config section ``[security]``):

- ``admin``: everything (the daemon's own uid, root, and what the config names);
- ``user``: spawn classes from ``user_modules`` prefixes, call and kill its own actors,
  publish outside ``sys.``, use sync objects, pages and the store;
- ``observer``: status, ps, lookup, logs, watch, subscribe.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError, PermissionDenied

ROLES = ("admin", "user", "observer")
#: Control methods an observer may call.
OBSERVER_METHODS = frozenset({"hello", "goodbye", "status", "ps", "lookup", "watch", "logs", "audit"})
#: Control methods only the daemon's own actor processes may call (checked by pid, from the kernel).
ACTOR_METHODS = frozenset({"actor_ready", "actor_failed", "actor_stopping", "heartbeat"})
#: Control methods that only an admin may call (they act on the whole daemon or on others' things).
ADMIN_METHODS = frozenset({"supervisor_stop", "pool_stop"})


@dataclass(frozen=True, slots=True)
class Identity:
    """The requester, as the daemon established it."""

    name: str  # "uid:1000" or "key:alice"
    role: str
    uid: int | None = None
    pid: int | None = None
    remote: bool = False

    def __str__(self) -> str:
        return f"{self.name}/pid:{self.pid}" if self.pid is not None else self.name


DAEMON = Identity("daemon", "admin", os.geteuid(), os.getpid())


def parse_peer(peer_address: str | None) -> tuple[int | None, int | None]:
    """``(uid, pid)`` from an ipc peer address ``host:uid:gid:pid`` (None, None when absent)."""
    if not peer_address:
        return None, None
    parts = peer_address.rsplit(":", 3)
    if len(parts) != 4:
        return None, None
    try:
        return int(parts[1]), int(parts[3])
    except ValueError:
        return None, None


@dataclass(frozen=True)
class Policy:
    """The ``[security]`` section: who has which role, and what users may spawn."""

    roles: Mapping[str, str]
    key_role: str = "user"
    user_modules: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, section: Any) -> Policy:
        """Raises: ConfigError: an unknown role or key, or a wrong type."""
        section = dict(section or {})
        unknown = set(section) - {"roles", "key_role", "user_modules", "limits"}
        if unknown:
            raise ConfigError(f"[security]: unknown keys {', '.join(sorted(unknown))}")
        roles = section.get("roles") or {}
        if not isinstance(roles, dict):
            raise ConfigError('[security] roles must be a table: roles = { "uid:1001" = "user" }')
        for who, role in roles.items():
            if role not in ROLES:
                raise ConfigError(f"[security] roles: {who!r} has role {role!r}; roles are {ROLES}")
            if not (who.startswith("uid:") or who.startswith("key:")):
                raise ConfigError(f"[security] roles: {who!r} must be 'uid:<number>' or 'key:<name>'")
        key_role = section.get("key_role", "user")
        if key_role not in ROLES:
            raise ConfigError(f"[security] key_role must be one of {ROLES}, not {key_role!r}")
        modules = section.get("user_modules") or []
        if not isinstance(modules, list) or not all(isinstance(m, str) and m for m in modules):
            raise ConfigError("[security] user_modules must be a list of module prefixes")
        return cls(roles, key_role, tuple(modules))

    def identify(self, peer_address: str | None, user_id: str | None) -> Identity | None:
        """The identity of a connection, or None if it has no role here."""
        uid, pid = parse_peer(peer_address)
        if user_id and user_id.startswith("key:"):
            return Identity(user_id, self.roles.get(user_id, self.key_role), None, None, remote=True)
        if uid is None:
            return None
        name = f"uid:{uid}"
        if uid in (0, os.geteuid()):
            role: str | None = "admin"
        else:
            role = self.roles.get(name)
        return Identity(name, role, uid, pid) if role else None

    def check(self, who: Identity, method: str) -> None:
        """Raises: PermissionDenied: ``who``'s role may not call ``method`` at all."""
        if method in ACTOR_METHODS:
            return  # checked against the actor's own pid by the handler
        if who.role == "admin":
            return
        if who.role == "observer" and method not in OBSERVER_METHODS:
            raise PermissionDenied(f"{who.name} (observer) may not call {method!r}")
        if who.role == "user" and method in ADMIN_METHODS:
            raise PermissionDenied(f"{who.name} (user) may not call {method!r}")

    def topic_verdict(self, peer_address: str | None, user_id: str | None, action: str) -> str:
        """Why a topic socket's peer may not ``action`` ("publish" or "subscribe"); "" if it may."""
        who = self.identify(peer_address, user_id)
        if who is None:
            return f"connection {user_id or peer_address or '?'} has no role on this daemon"
        if action == "publish" and who.role == "observer":
            return f"{who.name} (observer) may not publish"
        return ""

    def callers(self, owner: str, grants: Any = ()) -> list[str]:
        """The keys whose connections an actor accepts: its owner, those it was granted to, admins
        (``["*"]``: every authorized key is an admin)."""
        if self.key_role == "admin":
            return ["*"]
        admins = (who for who, role in self.roles.items() if role == "admin" and who.startswith("key:"))
        return sorted({owner, *grants, *admins})

    @staticmethod
    def may_call(who: Identity, owner: str, grants: Any = ()) -> bool:
        return who.role == "admin" or who.name == owner or who.name in grants

    def check_spawn(self, who: Identity, cls: str) -> None:
        """Raises: PermissionDenied: a user spawning a class outside ``user_modules``."""
        if who.role == "admin":
            return
        if who.role != "user":
            raise PermissionDenied(f"{who.name} ({who.role}) may not spawn actors")
        module = cls.partition(":")[0]
        if not any(module == p.rstrip(".") or module.startswith(p.rstrip(".") + ".") for p in self.user_modules):
            raise PermissionDenied(
                f"{who.name} (user) may not spawn {cls!r}: its module is not under [security] user_modules "
                f"{list(self.user_modules)}"
            )

    @staticmethod
    def check_owner(who: Identity, owner: str, what: str) -> None:
        """Raises: PermissionDenied: ``who`` is neither an admin nor the owner of ``what``."""
        if who.role != "admin" and who.name != owner:
            raise PermissionDenied(f"{who.name} may not act on {what}: it belongs to {owner}")


class Gate:
    """The control socket's first step: establish who sent a request and whether their role allows it.

    A refused request gets a ``PermissionDenied`` reply (a tell is dropped), is audited, and
    changes nothing; an allowed one goes on to ``invoker`` with ``request.peer`` set.
    """

    def __init__(self, policy: Policy, server: Any, audit: Any, invoker: Any) -> None:
        self.policy = policy
        self.server = server
        self.audit = audit
        self.invoker = invoker
        self._cache: dict[tuple[str | None, str | None], Identity | None] = {}

    def __call__(self, req: Any) -> None:
        peer = self.server.current_peer
        who = self._cache.get(peer, _MISSING)
        if who is _MISSING:
            who = self.policy.identify(*peer)
            if len(self._cache) > 4096:
                self._cache.clear()
            self._cache[peer] = who  # type: ignore[assignment]
        try:
            if who is None:
                raise PermissionDenied(f"connection {peer[1] or peer[0] or '?'} has no role on this daemon")
            self.policy.check(who, req.method)
        except PermissionDenied as exc:
            self.audit.refused(str(req.method)[:100], who or f"peer:{peer[0]}", str(exc))
            if req.kind != "tell":
                self.server.reply_error(req.ident, req.id, exc)
            return
        req.peer = who
        self.invoker(req)


_MISSING: Any = object()
