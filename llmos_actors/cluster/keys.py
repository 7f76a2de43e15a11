"""The cluster's CurveZMQ keys: made once by the registry, handed to daemons and drivers through Ray only.

One server key pair is shared by every node's daemon (a driver checks any daemon with one
public key) and one client key pair is the cluster's admin identity (``key:cluster``) on all
of them. Nothing is written outside private (0700) directories; secret files are 0600.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import zmq

#: The client key's file name in a daemon's ``authorized_keys``: its identity there is ``key:cluster``.
CLIENT_NAME = "cluster"
#: The daemons' own key (topic relays and object fetches between them): ``key:node``, role user.
NODE_NAME = "node"


@dataclass(frozen=True)
class ClusterKeys:
    server_public: str
    server_secret: str
    client_public: str
    client_secret: str
    node_public: str = ""
    node_secret: str = ""

    @classmethod
    def generate(cls) -> ClusterKeys:
        pairs = [zmq.curve_keypair() for _ in range(3)]
        return cls(*(key.decode() for pair in pairs for key in pair))

    def client_only(self) -> ClusterKeys:
        """What a driver needs: the server's public key and the client pair (never a daemon's secret)."""
        return ClusterKeys(self.server_public, "", self.client_public, self.client_secret)


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text + "\n")


def write_daemon_keys(keys: ClusterKeys, directory: Path) -> tuple[Path, Path, Path]:
    """The daemon's ``server.key`` (+ ``.pub``), its ``node.key`` (for its relays to peers) and an
    ``authorized_keys`` dir holding the cluster client key and the node key."""
    server_key, node_key = directory / "server.key", directory / f"{NODE_NAME}.key"
    _write_private(server_key, keys.server_secret)
    _write_private(node_key, keys.node_secret)
    (directory / "server.pub").write_text(keys.server_public + "\n")
    authorized = directory / "authorized_keys"
    authorized.mkdir(mode=0o700, exist_ok=True)
    (authorized / f"{CLIENT_NAME}.pub").write_text(keys.client_public + "\n")
    (authorized / f"{NODE_NAME}.pub").write_text(keys.node_public + "\n")
    return server_key, authorized, node_key


def write_client_key(keys: ClusterKeys, directory: Path) -> Path:
    """The cluster client's secret key file (0600) for ``llmos.connect(..., key=...)``."""
    path = directory / f"{CLIENT_NAME}.key"
    _write_private(path, keys.client_secret)
    return path
