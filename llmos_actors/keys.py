"""CurveZMQ key pairs for remote clients: ``llmos keygen NAME`` and the functions behind it.

See ``docs/security.md``: ``NAME.key`` is the secret key (mode 0600), ``NAME.pub`` the
public key the daemon's operator puts in its ``authorized_keys`` directory.
"""

from __future__ import annotations

from ._rpc.keyfiles import (
    DEFAULT_KEY_DIR,
    generate_keypair,
    load_authorized_keys,
    load_public_key,
    load_secret_key,
)

__all__ = ["DEFAULT_KEY_DIR", "generate_keypair", "load_authorized_keys", "load_public_key", "load_secret_key"]
