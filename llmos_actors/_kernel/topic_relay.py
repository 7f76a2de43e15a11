"""Topics across the nodes of a cluster: a daemon subscribes, at every peer daemon, to the
prefixes its own subscribers hold, and routes what arrives to them.

    publisher -> A's bus -> [relay DEALER of B, subscribed at A] -> B's bus -> B's subscribers

Pull, not flood: a peer sends a batch only when a subscriber of this node matches it, and
each node tells its peers only its own subscribers' prefixes (shortest covering set).
A relay is an ordinary subscriber at the peer (CURVE, the cluster's node key, role
``user``), so batches keep their order per publisher and the peer counts what the
relay missed; that count reaches this node's subscribers in the next relayed batch's header.
Relayed batches go to local subscribers only, never back out. A new local subscription is
confirmed to its subscriber only once every peer has confirmed the prefix (or after
``CONFIRM_WAIT`` seconds), so a publish anywhere after ``subscribe`` returns reaches it.

Config ``[cluster]`` (written by the cluster's node agent)::

    peers = "/path/peers.json"        # {"peers": {node_id: "tcp://host:port"}}, kept current by the agent
    node_key = "/path/node.key"       # the secret key this daemon's relays prove themselves with
    relay_identity = "key:node"       # peers' relays arrive with this identity
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import zmq

from .._rpc.keyfiles import load_secret_key
from .._rpc.zap import curve_client
from .._wire import protocol as P
from .._wire.codec import error_from_payload
from .._wire.limits import frame_limit, limit_inbound
from .._wire.topics import PUB, SYSTEM_PREFIX, refuse_topic
from ..config import EVENTS_SOCKET, tcp_endpoint
from ..errors import ConfigError, ProtocolError
from .service import Service

log = logging.getLogger(__name__)

#: Seconds between looks at the peers file and full re-subscriptions (a restarted peer forgot us).
TICK = 1.0
#: Prefixes per subscription request (each up to 1 KiB: requests stay far below the control frame limit).
CHUNK = 64
#: Largest peers file read.
MAX_PEERS_FILE = 1 << 20
#: Batches read from one peer per wake-up before other callbacks get a turn.
READ_LIMIT = 256
#: Longest a new local subscription waits for the peers to confirm it (a peer that is down or
#: unreachable must not hold the subscriber: it is confirmed, and the peer learns on a later tick).
CONFIRM_WAIT = 2.0

_NOBLOCK = int(zmq.NOBLOCK)
_SYSTEM = SYSTEM_PREFIX.encode()


def covering(prefixes: set[bytes]) -> set[bytes]:
    """What a peer needs to match: the prefixes not covered by a shorter one, less ``sys.`` ones
    (a daemon's own events stay on its node)."""
    out: list[bytes] = []
    for p in sorted(p for p in prefixes if not p.startswith(_SYSTEM)):  # a cover sorts right before what it covers
        if not out or not p.startswith(out[-1]):
            out.append(p)
    return set(out)


@dataclass(eq=False)
class Peer:
    node_id: str
    control: str  # the peer daemon's address (its control socket)
    endpoint: str  # its topic router
    sock: Any
    sent: set[bytes] = field(default_factory=set)  # prefixes subscribed there
    changed: int = 0  # the newest request that changed what we hold there
    acked: int = 0  # the newest request the peer confirmed
    relayed: int = 0  # messages received from it
    error: str = ""


@dataclass(eq=False)
class _Waiter:
    done: Any  # sends the subscriber its confirmation
    want: dict[str, int]  # node id -> the request id that peer must confirm
    timer: Any = None


class TopicRelay(Service):
    """Relays to and from peer daemons (off unless ``[cluster]`` names a peers file)."""

    name = "cluster"

    def __init__(self, ctx: zmq.Context, loop: Any, events: Any, network: Any, section: Any, config: Any) -> None:
        section = dict(section or {})
        unknown = set(section) - {"peers", "node_key", "relay_identity"}
        if unknown:
            raise ConfigError(f"[cluster]: unknown keys {', '.join(sorted(unknown))}")
        self.ctx, self.loop, self.events, self.network = ctx, loop, events, network
        self.peers_file = Path(section["peers"]) if section.get("peers") else None
        self.node_key = section.get("node_key") or ""
        self.relay_identity = str(section.get("relay_identity") or "key:node")
        self.max_bytes = config.max_message_bytes
        self.peers: dict[str, Peer] = {}
        self._keys: tuple[bytes, bytes] = (b"", b"")
        self._mtime = 0.0
        self._ids = 0
        self._sync_scheduled = False
        self._timer: Any = None
        self._waiting: list[_Waiter] = []  # subscriptions not yet confirmed, until the peers have

    @property
    def node_identity(self) -> str:
        """The identity other nodes' processes arrive with (``""``: this daemon is in no cluster)."""
        return self.relay_identity if self.peers_file is not None else ""

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        if self.peers_file is None:
            return
        if not self.node_key or not self.network.public_key:
            raise ConfigError("[cluster] needs node_key and a [network] listen address")
        self._keys = load_secret_key(self.node_key)
        self.events.relay_user = self.relay_identity
        self.events.on_prefixes_changed = self._prefixes_changed
        self.events.when_relayed = self._when_relayed
        self._tick()

    async def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.events.on_prefixes_changed = None
        self.events.when_relayed = None
        for node_id in list(self.peers):
            self._drop(node_id)
        for waiter in list(self._waiting):
            self._confirm(waiter)

    # ------------------------------------------------------------------ peers
    def _tick(self) -> None:
        try:
            self._read_peers()
            for peer in self.peers.values():  # idempotent: a restarted peer learns our prefixes again
                self._request(peer, "subscribe", sorted(peer.sent), change=False)
        except Exception:  # a bad file or a closing socket must not stop the ticks
            log.exception("topic relay: tick failed")
        self._timer = self.loop.call_later(TICK, self._tick)

    def _read_peers(self) -> None:
        assert self.peers_file is not None
        try:
            st = self.peers_file.stat()
        except FileNotFoundError:
            return
        if st.st_mtime == self._mtime:
            return
        self._mtime = st.st_mtime
        with open(self.peers_file, "rb") as fh:
            data = json.loads(fh.read(MAX_PEERS_FILE))
        peers = data.get("peers") if isinstance(data, dict) else None
        if not isinstance(peers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and v.startswith("tcp://") for k, v in peers.items()
        ):
            raise ConfigError(f"{self.peers_file}: expected {{'peers': {{node_id: 'tcp://host:port'}}}}")
        for node_id in [n for n, p in self.peers.items() if peers.get(n) != p.control]:
            self._drop(node_id)
        for node_id, control in peers.items():
            if node_id not in self.peers:
                self._add(node_id, control)

    def _add(self, node_id: str, control: str) -> None:
        endpoint = tcp_endpoint(control, EVENTS_SOCKET)
        sock = self.ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVHWM, 1000)
        limit_inbound(sock, frame_limit(self.max_bytes))
        public, secret = self._keys
        curve_client(sock, self.network.public_key, public, secret)
        sock.connect(endpoint)
        peer = self.peers[node_id] = Peer(node_id, control, endpoint, sock)
        self.loop.add_reader(sock.getsockopt(zmq.FD), self._on_readable, peer)
        peer.sent = covering(self.events.local_prefixes())
        self._request(peer, "subscribe", sorted(peer.sent))
        log.info("topic relay: peer %s at %s", node_id, endpoint)

    def _drop(self, node_id: str) -> None:
        peer = self.peers.pop(node_id, None)
        if peer is not None:
            self.loop.remove_reader(peer.sock.getsockopt(zmq.FD))
            peer.sock.close(linger=0)
            self._confirm_ready()  # nobody waits on a peer that is gone

    # ------------------------------------------------------------------ subscriptions
    def _prefixes_changed(self) -> None:
        if not self._sync_scheduled and self.peers:
            self._sync_scheduled = True
            self.loop.call_soon(self._sync)

    def _sync(self) -> None:
        self._sync_scheduled = False
        want = covering(self.events.local_prefixes())
        for peer in self.peers.values():
            gone, new = peer.sent - want, want - peer.sent
            peer.sent = set(want)
            if gone:
                self._request(peer, "unsubscribe", sorted(gone))
            if new:
                self._request(peer, "subscribe", sorted(new))

    def _when_relayed(self, done: Any) -> None:
        """Call ``done`` once every peer has confirmed what this node subscribes to now."""
        self.loop.call_soon(self._arm, done)  # after the _sync that this change scheduled

    def _arm(self, done: Any) -> None:
        want = {node_id: p.changed for node_id, p in self.peers.items() if p.acked < p.changed}
        if not want:
            done()
            return
        waiter = _Waiter(done, want)
        waiter.timer = self.loop.call_later(CONFIRM_WAIT, self._confirm, waiter)
        self._waiting.append(waiter)

    def _confirm_ready(self) -> None:
        for waiter in list(self._waiting):
            peers = self.peers
            if all(n not in peers or peers[n].acked >= changed for n, changed in waiter.want.items()):
                self._confirm(waiter)

    def _confirm(self, waiter: _Waiter) -> None:
        if waiter in self._waiting:
            self._waiting.remove(waiter)
            if waiter.timer is not None:
                waiter.timer.cancel()
            waiter.done()

    def _request(self, peer: Peer, method: str, prefixes: list[bytes], change: bool = True) -> None:
        for i in range(0, len(prefixes), CHUNK):  # never an empty one: unsubscribing [] means "everything"
            chunk = [p.decode() for p in prefixes[i : i + CHUNK]]
            self._ids += 1
            if change:
                peer.changed = self._ids
            head = P.request_header(P.CALL, self._ids, method)
            try:
                peer.sock.send_multipart([b"", head, msgpack.packb([chunk, "relay"])], _NOBLOCK)
            except zmq.Again:
                peer.error = "peer not reachable yet"  # the next tick sends the whole set again
                return
        self._check(peer)

    # ------------------------------------------------------------------ batches from peers
    def _check(self, peer: Peer) -> None:
        # Sends can swallow the fd's edge for messages waiting to be read.
        if int(peer.sock.getsockopt(zmq.EVENTS)) & zmq.POLLIN:
            self.loop.call_soon(self._on_readable, peer)

    def _on_readable(self, peer: Peer) -> None:
        if self.peers.get(peer.node_id) is not peer:
            return
        events = self.events
        for _ in range(READ_LIMIT):
            try:
                frames = peer.sock.recv_multipart(_NOBLOCK, copy=False)
            except zmq.Again:
                break
            try:
                if frames[0].bytes == b"":
                    self._reply(peer, frames)
                    continue
                topic, head_frame, body = frames
                if topic.bytes.startswith(_SYSTEM):
                    continue  # the peer's own events (a subscription like "" covers them): they stay there
                head = P.parse_header(head_frame.bytes)
                n = head.get("n")
                if head["kind"] != PUB or type(n) is not int or n < 1 or refuse_topic(topic.bytes):
                    raise ProtocolError("not a topic batch")
            except (ValueError, ProtocolError, IndexError):
                events.malformed += 1
                continue
            missed = head.get("dropped")
            peer.relayed += n
            events.route(topic.bytes, head_frame, body, n, relayed=True, missed=missed if type(missed) is int else 0)
        else:
            self.loop.call_soon(self._on_readable, peer)
        events._check_subscribers()

    def _reply(self, peer: Peer, frames: list) -> None:
        head = P.parse_header(frames[1].bytes)
        if head["kind"] == P.OK:
            peer.acked = max(peer.acked, head["id"])
            peer.error = ""
            if self._waiting:
                self._confirm_ready()
        else:
            peer.error = str(error_from_payload(msgpack.unpackb(frames[2].bytes)))[:300]
            log.warning("topic relay: peer %s refused a subscription: %s", peer.node_id, peer.error)

    # ------------------------------------------------------------------ reporting
    def status(self) -> dict:
        if self.peers_file is None:
            return {}
        return {
            "local_prefixes": sorted(p.decode(errors="replace") for p in covering(self.events.local_prefixes())),
            "peers": {
                node_id: {
                    "endpoint": p.endpoint,
                    "prefixes": sorted(x.decode(errors="replace") for x in p.sent),
                    "live": p.acked >= p.changed,
                    "relayed": p.relayed,
                    "error": p.error,
                }
                for node_id, p in self.peers.items()
            },
        }
