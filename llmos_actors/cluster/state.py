"""What the registry must not forget when Ray restarts it: kept in Ray's internal key-value store.

The registry is a detached Ray actor with ``max_restarts``; a new incarnation reads back the
cluster keys (the node daemons keep theirs: a fresh pair would lock every driver out) and the
supervised permanent actors (the node daemons know which actors run, not how to spawn one
again elsewhere). Everything else (nodes, their daemons, the names in use) it rebuilds from
Ray's node table, its named agents and the daemons. ``down()`` clears it.

Values are msgpack (never pickle). A spawn spec msgpack cannot carry (an array argument, a
ref) stays supervised in memory and is logged as not persisted.
"""

from __future__ import annotations

import logging
from typing import Any

import msgpack

log = logging.getLogger(__name__)

#: Ray KV namespace and keys.
KV_NAMESPACE = "llmos"
KEYS = b"cluster-keys"
SUPERVISED = b"supervised"
#: The registry's own client-key directory: a new incarnation removes the one its killed
#: predecessor could not (it holds the cluster's client secret).
KEYDIR = b"registry-keydir"


def load(key: bytes) -> Any:
    """The value saved under ``key``, or None."""
    from ray.experimental.internal_kv import _internal_kv_get

    raw = _internal_kv_get(key, namespace=KV_NAMESPACE)
    return None if raw is None else msgpack.unpackb(raw, strict_map_key=False)


def save(key: bytes, value: Any) -> bool:
    """Save ``value`` under ``key``; False (logged) if msgpack cannot carry it."""
    from ray.experimental.internal_kv import _internal_kv_put

    try:
        raw = msgpack.packb(value)
    except (TypeError, ValueError) as exc:
        log.warning("llmos registry: %s not persisted (%s): it is lost if the registry restarts", key.decode(), exc)
        return False
    _internal_kv_put(key, raw, overwrite=True, namespace=KV_NAMESPACE)
    return True


def save_supervised(permanent: dict[str, dict], respawned: int) -> None:
    """The supervised actors: each spec on its own, so one that cannot be saved loses only itself."""
    kept = {aid: spec for aid, spec in permanent.items() if _packable(aid, spec)}
    save(SUPERVISED, {"permanent": kept, "respawned": respawned})


def _packable(aid: str, spec: dict) -> bool:
    try:
        msgpack.packb(spec)
        return True
    except (TypeError, ValueError) as exc:
        log.warning("llmos registry: supervised actor %s not persisted (%s)", aid, exc)
        return False


def clear() -> None:
    from ray.experimental.internal_kv import _internal_kv_del

    for key in (KEYS, SUPERVISED, KEYDIR):
        _internal_kv_del(key, namespace=KV_NAMESPACE)
