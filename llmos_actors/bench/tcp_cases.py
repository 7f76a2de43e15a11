"""Calls over TCP with CurveZMQ: ours against raw pyzmq REQ/REP with CURVE, in the same run.

``1_1_actor_calls_sync_tcp_curve``: one remote client (``connect("tcp://...", key=...)``)
calling one actor straight over its own CurveZMQ endpoint, one call in flight, against
a pyzmq REQ/REP echo over TCP with CURVE on loopback (the floor: the same handshake,
encryption and round trip, nothing else). The case runs its own daemon listening on
loopback (keys made in the run's private directory), whatever daemon the run uses
otherwise; importing this module registers the case and its peer.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Any

import zmq
import zmq.utils.z85

from ..keys import generate_keypair
from . import actors
from . import peer_servers as srv
from .cases import CASES, Case
from .context import BenchContext
from .ours import SYNC_ROUND, call_round
from .payload import PAYLOAD_BYTES, reqrep_round
from .peer_procs import start_curve_peer
from .peer_zmq import ZmqClient
from .peers import PEERS, Peer
from .workload import Workload

CASE = "1_1_actor_calls_sync_tcp_curve"
PEER = "zmq_req_rep_tcp_curve"


def curve_rep_server(addr: str, secret: bytes, client_public: bytes, ready: Any) -> None:
    """REQ/REP echo over TCP with CURVE; only ``client_public`` is let in (a ZAP handler, like the daemon's)."""
    import threading

    ctx = zmq.Context()
    zap = ctx.socket(zmq.REP)
    zap.bind("inproc://zeromq.zap.01")

    def authenticate() -> None:
        while True:
            try:
                msg = zap.recv_multipart()
            except zmq.ZMQError:
                return
            ok = msg[5] == b"CURVE" and msg[6] == zmq.utils.z85.decode(client_public)
            zap.send_multipart([msg[0], msg[1], b"200" if ok else b"400", b"", b"key:bench" if ok else b"", b""])

    threading.Thread(target=authenticate, daemon=True).start()
    sock = ctx.socket(zmq.REP)
    sock.setsockopt(zmq.CURVE_SERVER, 1)
    sock.setsockopt(zmq.CURVE_SECRETKEY, secret)
    sock.setsockopt(zmq.ZAP_DOMAIN, b"llmos")
    port = sock.bind_to_random_port(addr)
    ready.send(port)
    try:
        while True:
            raw = sock.recv()
            if raw == srv.STOP:
                sock.send(srv.STOP)
                return
            sock.send(srv.handle_packed(raw))
    finally:
        sock.close(linger=0)
        zap.close(linger=0)
        ctx.term()


class _Keys:
    """A server and a client key pair in the run's private directory."""

    def __init__(self, workdir: Path, name: str) -> None:
        self.dir = workdir / f"curve-{name}"
        shutil.rmtree(self.dir, ignore_errors=True)
        self.authorized = self.dir / "authorized"
        self.authorized.mkdir(parents=True, mode=0o700)
        self.client_key, client_pub = generate_keypair("bench", self.dir / "client")
        shutil.copy(client_pub, self.authorized / "bench.pub")
        self.client_public = client_pub.read_text().strip().encode()
        self.client_secret = self.client_key.read_text().strip().encode()
        self.server_key = self.dir / "server.key"


class RemoteSyncCalls(Workload):
    """``ref.call`` from a TCP client with CurveZMQ keys, straight to the actor's TCP endpoint."""

    ops = SYNC_ROUND
    note = "connect('tcp://127.0.0.1:P', key=...), ref.call(echo, 97 B map), one in flight"

    def __init__(self, ctx: BenchContext) -> None:
        from ..testing import free_tcp_ports, start_daemon

        keys = self.keys = _Keys(ctx.workdir, "ours")
        url = f"tcp://127.0.0.1:{free_tcp_ports(3)}"
        network = {"listen": [url], "authorized_keys": str(keys.authorized), "server_key": str(keys.server_key)}
        security = {"roles": {"key:bench": "admin"}}
        self._stack = contextlib.ExitStack()
        try:
            daemon = start_daemon(prefork=1, preload=[], network=network, security=security)
            self.daemon = self._stack.enter_context(daemon)
            from ..client import connect

            self.kernel = connect(url, key=keys.client_key, server_key=str(keys.server_key.with_suffix(".pub")))
            self._stack.callback(self.kernel.close)
            self.ref = self.kernel.spawn(actors.Echo)
        except BaseException:
            self._stack.close()
            raise
        self.seq = 0

    def round(self) -> None:
        self.seq = call_round(self.ref.call, self.seq, SYNC_ROUND)

    def close(self) -> None:
        self._stack.close()


class ZmqReqRepCurve(ZmqClient):
    """pyzmq REQ/REP over TCP on loopback with CURVE (and a ZAP check), one request in flight; closed as the ipc one."""

    ops = SYNC_ROUND
    note = f"REQ/REP tcp + CURVE, {PAYLOAD_BYTES} B msgpack, both sides pack/unpack"

    def __init__(self, ctx: BenchContext) -> None:
        keys = _Keys(ctx.workdir, "peer")
        server_public, server_secret = zmq.curve_keypair()
        self.proc, self.zctx, self.sock = start_curve_peer(
            curve_rep_server,
            ("tcp://127.0.0.1", server_secret, keys.client_public),
            zmq.REQ,
            (server_public, keys.client_public, keys.client_secret),
        )
        self.seq = 0

    def round(self) -> None:
        self.seq = reqrep_round(self.sock.send, self.sock.recv, self.seq, SYNC_ROUND)


PEERS[PEER] = Peer(PEER, "pyzmq REQ/REP tcp+CURVE", lambda ctx, **_: ZmqReqRepCurve(ctx))
CASES[CASE] = Case(
    CASE,
    "calls/s",
    "one remote caller over TCP with CurveZMQ keys, one actor, one call in flight (ref.call)",
    lambda ctx: RemoteSyncCalls(ctx),
    peers=(PEER,),
    ray="no Ray equivalent (Ray's cluster traffic is not authenticated per client)",
)
