"""Kernel handles on every node's daemon, and spawning on the node that placement picks.

Shared by a driver's ``ClusterKernel`` and by the registry's supervisor (which respawns
permanent actors of lost nodes): both hold the cluster client key and reach each daemon
over TCP + CURVE, reconnecting when a daemon was restarted (a new pid in the node table).
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..client import Kernel, connect
from ..errors import ActorNotFound, DaemonUnavailable
from ..refs import ActorRef
from .keys import ClusterKeys, write_client_key
from .placement import choose_node

#: Prefix of the private directory holding a handle's copy of the cluster client key.
KEYDIR_PREFIX = "llmos-ck-"


class NodeKernels:
    """One ``Kernel`` per up node, opened on first use; ``table()`` is the registry's node table."""

    def __init__(self, keys: ClusterKeys, table: Callable[[], list[dict]], names: Any) -> None:
        self.table = table
        self.names = names  # claim/confirm/release of cluster-wide names (``names.NameClaims`` or the registry's)
        self.keydir = Path(tempfile.mkdtemp(prefix=KEYDIR_PREFIX))
        self._key_file = write_client_key(keys, self.keydir)
        self._server_key = keys.server_public
        self.kernels: dict[str, Kernel] = {}
        self.lost: set[str] = set()
        self.lock = threading.RLock()

    def kernel(self, node_id: str) -> Kernel:
        """The plain kernel handle on one node's daemon.

        Raises:
            DaemonUnavailable: the node was lost, or its daemon is not up.
        """
        with self.lock:
            if node_id in self.lost:
                raise DaemonUnavailable(f"node {node_id} was lost")
            info = {n["node_id"]: n for n in self.table()}.get(node_id)
            if info is None or info["state"] != "up":
                raise DaemonUnavailable(f"no llmos daemon up on node {node_id}")
            kernel = self.kernels.get(node_id)
            if kernel is not None and kernel.daemon_info.get("pid") != info["pid"]:
                kernel.close()  # its daemon was restarted: the new one knows nothing of this handle
                kernel = None
            if kernel is None:
                kernel = connect(info["endpoint"], key=str(self._key_file), server_key=self._server_key)
                self.kernels[node_id] = kernel
            return kernel

    def up(self) -> dict[str, Kernel]:
        """A kernel on every up node not known lost."""
        ids = [n["node_id"] for n in self.table() if n["state"] == "up" and n["node_id"] not in self.lost]
        return {node_id: self.kernel(node_id) for node_id in ids}

    def node_of(self, ref: ActorRef) -> str:
        for node_id, kernel in list(self.kernels.items()):
            if ref._kernel is kernel:
                return node_id
        raise ActorNotFound(f"{ref!r} was not made by this cluster kernel")

    def find(self, name: str, *, reachable: bool = False) -> ActorRef | None:
        """The actor named ``name`` on any node; with ``reachable``, only once it has its TCP endpoint (ready)."""
        for kernel in self.up().values():
            try:
                ref = kernel.lookup(name)
            except ActorNotFound:
                continue
            if not reachable or ref.address.endpoint.startswith("tcp://"):
                return ref
        return None

    def running(self, node_id: str, name: str) -> str:
        """The id of the live actor named ``name`` on that node's daemon (``""``: none, or no daemon runs there)."""
        try:
            rows = self.kernel(node_id).ps(exited=False)
        except DaemonUnavailable:
            return ""
        return next((row["id"] for row in rows if row.get("name") == name), "")

    def spawn(
        self, cls: Any, args: tuple | list, kwargs: dict | None, node: Any, options: dict
    ) -> tuple[str, ActorRef]:
        """Spawn on the node ``node`` names (id, label or ``"auto"``); returns ``(node id, ref)``.

        A name is claimed at the registry first (``names``), so it is unique per cluster: of two
        spawns of one name racing on two nodes, one gets ``NameTaken``.

        Raises:
            NameTaken: the name runs (or is being spawned) on some node already.
            ResourceUnavailable: no up node matches or fits.
        """
        name = options.get("name")
        auto = node in (None, "auto")
        load = {nid: len(k.ps(exited=False)) for nid, k in self.up().items()} if auto else {}
        node_id = choose_node(node, [n for n in self.table() if n["node_id"] not in self.lost], load, options)
        token = self.names.claim(name, node_id) if name else ""
        try:
            ref = self.kernel(node_id).spawn_with(cls, args, kwargs, **options)
        except BaseException:
            if token:
                self.names.release(name, token)
            raise
        if token:
            self.names.confirm(name, token, ref.id)
        ref._kernel._core.actor_connection(ref.address)  # opened now: a node loss fails it even if never called
        return node_id, ref

    def forget(self, node_id: str) -> Kernel | None:
        """Mark a node lost; returns its kernel handle (the caller fails what it holds)."""
        with self.lock:
            self.lost.add(node_id)
            return self.kernels.pop(node_id, None)

    def close(self) -> None:
        with self.lock:
            kernels, self.kernels = list(self.kernels.values()), {}
        for kernel in kernels:
            kernel.close()
        shutil.rmtree(self.keydir, ignore_errors=True)
