"""Who is on the other end of a loopback TCP connection: the uid that owns the peer's socket.

HTTP carries no identity the daemon can believe, and its listener is TCP, so there is no
``SO_PEERCRED``. On loopback both ends are sockets of this machine, and the kernel lists
every TCP socket with its owner's uid in ``/proc/net/tcp`` (``tcp6`` for IPv6): the peer's
socket is the row whose local address is the peer's address and whose remote address is
ours. That uid comes from the kernel, never from the request (as identd answers).

Anything else (a peer that is not on loopback, a row not found, no ``/proc``) has no uid.
``loopback_host`` says whether a request named the listener by a loopback name, as a page
of another site rebound to 127.0.0.1 (DNS rebinding) does not.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from typing import Any

PROC_TCP = "/proc/net/tcp"
PROC_TCP6 = "/proc/net/tcp6"
#: The state column of a connected socket (closed ones linger in TIME_WAIT owned by no one: uid 0).
ESTABLISHED = "01"


def proc_address(host: str, port: int) -> tuple[str, bool]:
    """``host:port`` as ``/proc/net/tcp*`` prints it (32-bit words in native order, hex), and whether IPv6."""
    if ":" in host:
        raw = socket.inet_pton(socket.AF_INET6, host.split("%", 1)[0])
        words = struct.unpack("=4I", raw)
        return "".join(f"{w:08X}" for w in words) + f":{port:04X}", True
    (word,) = struct.unpack("=I", socket.inet_aton(host))
    return f"{word:08X}:{port:04X}", False


def loopback_peer_uid(peer: Any, local: Any, tables: tuple[str, str] = (PROC_TCP, PROC_TCP6)) -> int | None:
    """The uid owning the socket at ``peer`` that is connected to ``local`` (both ``(host, port, ...)``).

    None unless ``peer`` is a loopback address and the kernel lists that connection.
    """
    if not peer or not local:
        return None
    try:
        address = ipaddress.ip_address(peer[0].split("%", 1)[0])
        mapped = getattr(address, "ipv4_mapped", None)
        if not (address.is_loopback or (mapped is not None and mapped.is_loopback)):
            return None
        want_local, v6 = proc_address(peer[0], int(peer[1]))
        want_remote, _ = proc_address(local[0], int(local[1]))
    except (ValueError, OSError, TypeError, IndexError):
        return None
    try:
        with open(tables[1] if v6 else tables[0], encoding="ascii") as table:
            next(table, None)  # the header
            for line in table:
                fields = line.split()
                if fields[1:3] == [want_local, want_remote] and fields[3] == ESTABLISHED:
                    return int(fields[7])
    except (OSError, ValueError):
        return None
    return None


def loopback_host(host: str | None) -> bool:
    """Whether a ``Host`` header names a loopback address or ``localhost`` (with or without a port)."""
    if not host:
        return False
    if host.startswith("["):  # [v6 address]:port
        host = host[1 : host.find("]")]
    elif host.count(":") == 1:  # name:port
        host = host.rsplit(":", 1)[0]
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
