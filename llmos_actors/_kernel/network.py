"""Remote clients: the daemon's sockets on TCP, CurveZMQ only, keys checked before any message.

Config section ``[network]``::

    listen = ["tcp://0.0.0.0:7700"]        # control at 7700, topics at 7701 (events) and 7702 (publish)
    server_key = "/var/lib/llmos/server.key"   # default <state_dir>/server.key, made on first start
    authorized_keys = "/etc/llmos/authorized_keys"  # default <state_dir>/authorized_keys; NAME.pub files

Every TCP endpoint is a CurveZMQ server: a client must know the daemon's public key (so
nobody can pose as the daemon) and hold a secret key whose public half is in
``authorized_keys`` (the ZAP handler refuses any other before a message is read). There
is no plain TCP. Actors bind TCP the same way (see ``_runtime``), so remote calls still
go straight to the actor.
"""

from __future__ import annotations

import logging
from typing import Any

from .._rpc.tcp import NetworkSettings, server_keys
from .._rpc.zap import ZapHandler, curve_server
from ..config import CONTROL_SOCKET, EVENTS_SOCKET, PUBLISH_SOCKET, tcp_endpoint
from .service import Service

log = logging.getLogger(__name__)


class Network(Service):
    """Binds the daemon's control and topic sockets on the configured TCP addresses."""

    name = "network"

    def __init__(self, daemon: Any) -> None:
        self.daemon = daemon
        self.settings = NetworkSettings.from_config(daemon.config.extra.get("network"), daemon.config.state_dir)
        self.zap: ZapHandler | None = None
        self.public_key = b""
        self.endpoints: list[str] = []

    async def start(self) -> None:
        if not self.settings.listen:
            return
        d = self.daemon
        self.public_key, secret = server_keys(self.settings)
        self.settings.authorized_keys.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.zap = ZapHandler(d.ctx, d.loop, self.settings.authorized_keys)
        sockets = ((d.server.sock, CONTROL_SOCKET), (d.events.outbox, EVENTS_SOCKET), (d.events.inbox, PUBLISH_SOCKET))
        for address in self.settings.listen:
            for sock, name in sockets:
                curve_server(sock, secret)
                endpoint = tcp_endpoint(address, name)
                sock.bind(endpoint)
                self.endpoints.append(endpoint)
        log.info("listening on %s (CurveZMQ; server key %s)", ", ".join(self.endpoints), self.public_key.decode())

    async def stop(self) -> None:
        if self.zap is not None:
            self.zap.close()
            self.zap = None

    def status(self) -> dict:
        if not self.settings.listen:
            return {}
        zap = self.zap
        return {
            "listen": list(self.settings.listen),
            "server_key": self.public_key.decode(),
            "accepted": zap.accepted if zap else 0,
            "refused": zap.refused if zap else 0,
        }
