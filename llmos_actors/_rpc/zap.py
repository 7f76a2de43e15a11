"""The ZAP handler: who may complete a CurveZMQ handshake with this process's TCP sockets.

libzmq asks the ZAP handler of a socket's context (``inproc://zeromq.zap.01``) about every
new CURVE connection, before a single message is read from it. We answer from the
``authorized_keys`` directory: a known key is accepted with the user id ``key:<name>``
(the daemon's identity for it, seen as the ``User-Id`` property of each message); an
unknown key is refused. Sockets without CURVE (unix sockets) never ask: they stay NULL.

The directory is read again when it changes, so adding a key needs no restart.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import zmq

from .keyfiles import load_authorized_keys

log = logging.getLogger(__name__)

ZAP_ENDPOINT = "inproc://zeromq.zap.01"
#: The ZAP domain our TCP sockets declare.
DOMAIN = b"llmos"


class ZapHandler:
    """Serves ZAP requests on ``loop`` (one per ZeroMQ context that has CURVE sockets)."""

    def __init__(self, ctx: zmq.Context, loop: Any, authorized_dir: str | os.PathLike[str]) -> None:
        self.loop = loop
        self.dir = Path(authorized_dir).expanduser()
        self.keys: dict[bytes, str] = {}
        self._stamp: float | None = None
        self.accepted = 0
        self.refused = 0
        #: ``key:<name> -> bool``: whether that key may connect here at all (an actor: who may call it).
        self.allow: Any = None
        self.sock = ctx.socket(zmq.REP)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind(ZAP_ENDPOINT)
        self._fd = self.sock.getsockopt(zmq.FD)
        loop.add_reader(self._fd, self._on_readable)

    def _current_keys(self) -> dict[bytes, str]:
        try:
            stamp = self.dir.stat().st_mtime_ns
        except OSError:
            stamp = None
        if stamp != self._stamp or stamp is None:
            self.keys = load_authorized_keys(self.dir)
            self._stamp = stamp
        return self.keys

    def _on_readable(self) -> None:
        while self.sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            try:
                msg = self.sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            self.sock.send_multipart(self.answer(msg))

    def answer(self, msg: list[bytes]) -> list[bytes]:
        """The ZAP reply (RFC 27) to one request."""
        if len(msg) < 6:
            return [b"1.0", b"", b"500", b"malformed ZAP request", b"", b""]
        version, request_id, domain, address, _identity, mechanism = msg[:6]
        credentials = msg[6:]
        name = None
        if domain == DOMAIN and mechanism == b"CURVE" and len(credentials) == 1:
            name = self._current_keys().get(credentials[0])
        if name is None:
            self.refused += 1
            log.warning("refused a %s connection from %s: unknown key", mechanism.decode(errors="replace"), address)
            return [version, request_id, b"400", b"unknown key", b"", b""]
        user_id = f"key:{name}"
        if self.allow is not None and not self.allow(user_id):
            self.refused += 1
            log.warning("refused %s: not permitted to call this actor (its owner may kernel.grant it)", user_id)
            return [version, request_id, b"400", b"not permitted", b"", b""]
        self.accepted += 1
        return [version, request_id, b"200", b"OK", user_id.encode(), b""]

    def close(self) -> None:
        self.loop.remove_reader(self._fd)
        self.sock.close(linger=0)


def curve_server(sock: zmq.Socket, secret_key: bytes) -> None:
    """Make the next ``bind`` of ``sock`` a CurveZMQ server checked by the ZAP handler.

    Options take effect for binds made after them: endpoints bound before (unix sockets)
    stay as they were.
    """
    sock.setsockopt(zmq.CURVE_SERVER, 1)
    sock.setsockopt(zmq.CURVE_SECRETKEY, secret_key)
    sock.setsockopt(zmq.ZAP_DOMAIN, DOMAIN)


def curve_client(sock: zmq.Socket, server_key: bytes, public_key: bytes, secret_key: bytes) -> None:
    """Make ``sock``'s next ``connect`` a CurveZMQ client of the server with ``server_key``."""
    sock.setsockopt(zmq.CURVE_SERVERKEY, server_key)
    sock.setsockopt(zmq.CURVE_PUBLICKEY, public_key)
    sock.setsockopt(zmq.CURVE_SECRETKEY, secret_key)
