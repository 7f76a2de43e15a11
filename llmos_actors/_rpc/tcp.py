"""TCP with CurveZMQ, for the daemon's sockets, actors' sockets and remote clients.

The settings (``[network]``, see ``_kernel/network.py``), the daemon's key pair, an
actor's TCP endpoint beside its unix socket, and a remote client's side of the handshake.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq

from .._wire.address import ActorAddress
from ..config import Config
from ..errors import ConfigError, ProtocolError
from .keyfiles import load_public_key, load_secret_key
from .zap import ZapHandler, curve_client, curve_server

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NetworkSettings:
    listen: tuple[str, ...]
    server_key: Path
    authorized_keys: Path

    @classmethod
    def from_config(cls, section: Any, state_dir: Path) -> NetworkSettings:
        """Raises: ConfigError: unknown keys, or a listen address that is not ``tcp://host:port``."""
        section = dict(section or {})
        unknown = set(section) - {"listen", "server_key", "authorized_keys"}
        if unknown:
            raise ConfigError(f"[network]: unknown keys {', '.join(sorted(unknown))}")
        listen = section.get("listen") or []
        if isinstance(listen, str):
            listen = [listen]
        for address in listen:
            host, _, port = str(address).removeprefix("tcp://").rpartition(":")
            if not str(address).startswith("tcp://") or not host or not port.isdigit() or int(port) > 65533:
                raise ConfigError(
                    f"[network] listen: {address!r} must be 'tcp://host:port' (CurveZMQ is always on; "
                    "ports port..port+2 are used)"
                )
        return cls(
            tuple(str(a) for a in listen),
            Path(section.get("server_key") or state_dir / "server.key").expanduser(),
            Path(section.get("authorized_keys") or state_dir / "authorized_keys").expanduser(),
        )


def server_keys(settings: NetworkSettings) -> tuple[bytes, bytes]:
    """The daemon's key pair, made on first use (``server.key`` 0600 and ``server.pub`` beside it)."""
    path = settings.server_key
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        public, secret = zmq.curve_keypair()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secret.decode() + "\n")
        path.with_suffix(".pub").write_text(public.decode() + "\n")
        log.info("made the daemon's CurveZMQ key pair: %s (public key in %s)", path, path.with_suffix(".pub"))
    return load_secret_key(path)


def listen_host(settings: NetworkSettings) -> str:
    """The host part of the first listen address (actors bind there, on a port of their own)."""
    return settings.listen[0].removeprefix("tcp://").rpartition(":")[0]


def bind_actor_tcp(sock: zmq.Socket, ctx: zmq.Context, loop: Any, config: Config) -> tuple[str, ZapHandler | None]:
    """Bind an actor's ROUTER on TCP too when the daemon listens there; returns ``(endpoint, zap)``.

    The actor checks keys itself (its own ZAP handler, the daemon's ``authorized_keys``) and
    proves itself with the daemon's key, so a remote caller's handshake is the same as with
    the daemon. ``("", None)`` when the daemon has no TCP listener.
    """
    settings = NetworkSettings.from_config(config.extra.get("network"), config.state_dir)
    if not settings.listen:
        return "", None
    _public, secret = load_secret_key(settings.server_key)
    zap = ZapHandler(ctx, loop, settings.authorized_keys)
    curve_server(sock, secret)
    sock.bind(f"tcp://{listen_host(settings)}:*")
    return sock.getsockopt_string(zmq.LAST_ENDPOINT), zap


#: Routing-id prefix of a remote client's sockets: servers reply to it with arrays by value
#: (its process cannot map this machine's pages). It only picks the encoding of replies to that
#: same socket, so a client naming itself so gains nothing over its own data.
BY_VALUE_PREFIX = b"net:"


@functools.lru_cache(maxsize=16)
def _client_keys(key_file: str, server_key: str) -> tuple[bytes, bytes, bytes]:
    public, secret = load_secret_key(key_file)
    return load_public_key(server_key), public, secret


def secure_client(sock: zmq.Socket, config: Config) -> None:
    """Make ``sock`` a CurveZMQ client when ``config`` reaches a remote daemon (before ``connect``)."""
    if config.connect:
        server, public, secret = _client_keys(str(config.key_file), str(config.server_key))
        curve_client(sock, server, public, secret)
        sock.setsockopt(zmq.ROUTING_ID, BY_VALUE_PREFIX + os.urandom(12))


def secure_node_client(sock: zmq.Socket, config: Config) -> None:
    """Make ``sock`` a CurveZMQ client of an actor on another node of a cluster (before ``connect``).

    A process on a cluster node (an actor, or a local client) proves itself with the cluster's
    node key (``[cluster] node_key``) and checks the other side with the daemons' shared server
    key; replies come by value (this process cannot map the other node's pages).

    Raises:
        ProtocolError: this daemon is not part of a cluster (no node key to reach another machine with).
    """
    node_key = (config.extra.get("cluster") or {}).get("node_key")
    if not node_key:
        raise ProtocolError(
            "this actor address is on another machine, and this daemon is not part of an llmos cluster: "
            "connect to that daemon over TCP (llmos.connect('tcp://...', key=..., server_key=...))"
        )
    settings = NetworkSettings.from_config(config.extra.get("network"), config.state_dir)
    server, public, secret = _client_keys(str(node_key), str(settings.server_key.with_suffix(".pub")))
    curve_client(sock, server, public, secret)
    sock.setsockopt(zmq.ROUTING_ID, BY_VALUE_PREFIX + os.urandom(12))


def actor_route(config: Config, addr: ActorAddress) -> tuple[str, bool]:
    """Where this process reaches ``addr``'s actor, and whether that actor is on another node of a cluster.

    A client of a local daemon uses the actor's local address when it is one of this daemon's
    (the address this daemon gives that actor id) and its TCP endpoint otherwise: a ref made on
    another node (an actor's own ref, its children's) carries that node's TCP endpoint with it.

    Raises:
        ProtocolError: a remote client holds an address without a TCP endpoint.
    """
    if config.connect:
        return remote_endpoint(config, addr.endpoint if addr.endpoint.startswith("tcp://") else addr.tcp), False
    if addr.endpoint.startswith("tcp://"):
        return addr.endpoint, True
    in_cluster = bool((config.extra.get("cluster") or {}).get("node_key"))
    if in_cluster and addr.tcp and addr.endpoint != config.actor_endpoint(addr.id):
        return addr.tcp, True
    return addr.endpoint, False


def remote_endpoint(config: Config, endpoint: str) -> str:
    """Where a remote client reaches an actor: its TCP endpoint, on the host the client used for the daemon.

    Raises:
        ProtocolError: the address has no TCP endpoint (a ref made on a daemon that does not listen
            on TCP: look the actor up by name with ``kernel.lookup`` for a reachable ref).
    """
    if not config.connect:
        return endpoint
    if not endpoint.startswith("tcp://"):
        raise ProtocolError(
            "this actor address is not reachable over TCP (refs inside messages carry the daemon's local "
            "address): use kernel.lookup(name) for a remote ref"
        )
    host, _, port = endpoint.removeprefix("tcp://").rpartition(":")
    if host in ("0.0.0.0", "*", "[::]", "::"):
        host = config.connect.removeprefix("tcp://").rpartition(":")[0]
    return f"tcp://{host}:{port}"


def free_tcp_ports(count: int = 3, host: str = "127.0.0.1") -> int:
    """A port P with P .. P+count-1 free on ``host`` (a TCP-listening daemon uses three in a row)."""
    for _ in range(100):
        with socket.socket() as probe:
            probe.bind((host, 0))
            port = probe.getsockname()[1]
        if port + count > 65535:
            continue
        held: list[socket.socket] = []
        try:
            for p in range(port + 1, port + count):
                s = socket.socket()
                held.append(s)
                s.bind((host, p))
            return port
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise RuntimeError(f"no {count} free TCP ports in a row on {host}")
