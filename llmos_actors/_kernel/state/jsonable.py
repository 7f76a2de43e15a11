"""JSON for the journal's specs and for ``llmos state export``: bytes travel as ``{"$b64": ...}``.

Spawn requests carry packed arguments (bytes); JSON keeps the journal readable with the
``sqlite3`` tool and makes exports portable.
"""

from __future__ import annotations

import base64
import json
from typing import Any

_B64 = "$b64"


def _encode(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {_B64: base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, dict):
        return {str(k): _encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if len(value) == 1 and _B64 in value:
            return base64.b64decode(value[_B64])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def dumps(value: Any) -> str:
    return json.dumps(_encode(value), separators=(",", ":"), sort_keys=True)


def loads(text: str) -> Any:
    return _decode(json.loads(text))


def to_plain(value: Any) -> Any:
    """``value`` with bytes as ``{"$b64": ...}`` (for a JSON document built elsewhere)."""
    return _encode(value)


def from_plain(value: Any) -> Any:
    return _decode(value)
