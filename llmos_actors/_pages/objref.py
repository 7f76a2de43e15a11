"""``ObjectRef``: the plain-data name of an object in a daemon's store (``kernel.put``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .._wire.codec import EXT_OBJREF
from ..errors import ProtocolError


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """A stored array or tensor (``kernel.put``): plain data, pass it to anyone, ``kernel.get`` it.

    Attributes:
        id: the object's id in its daemon's store.
        nbytes: the bytes its data spans.
    """

    id: str
    nbytes: int = 0

    def __llmos_wire__(self) -> tuple[int, list]:
        return EXT_OBJREF, [self.id, self.nbytes]

    @classmethod
    def from_wire(cls, payload: Any) -> ObjectRef:
        if type(payload) is not list or len(payload) != 2 or type(payload[0]) is not str or type(payload[1]) is not int:
            raise ProtocolError(f"malformed object ref: {payload!r:.200}")
        return cls(payload[0], payload[1])
