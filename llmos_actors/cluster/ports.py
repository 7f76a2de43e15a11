"""Free TCP ports for a node's daemon: it listens on P, P+1 and P+2."""

from __future__ import annotations

import socket


def free_port_triple(host: str) -> int:
    """A port P with P..P+2 free on ``host`` right now (the daemon binds them moments later)."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind((host, 0))
            port = probe.getsockname()[1]
        if port + 3 > 65535:
            continue
        held: list[socket.socket] = []
        try:
            for p in (port + 1, port + 2):
                s = socket.socket()
                held.append(s)
                s.bind((host, p))
            return port
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise OSError(f"no three free consecutive TCP ports on {host}")
