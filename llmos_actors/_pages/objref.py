"""``ObjectRef``: the plain-data name of an object in a daemon's store (``kernel.put``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .._wire.codec import EXT_OBJREF
from ..errors import ProtocolError

#: Longest ``home`` address accepted from the wire.
MAX_HOME = 300


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """A stored array or tensor (``kernel.put``): plain data, pass it to anyone, ``kernel.get`` it.

    Attributes:
        id: the object's id in its daemon's store.
        nbytes: the bytes its data spans.
        home: where the object lives: its daemon's TCP address (``tcp://host:port``), "" when that
            daemon has no TCP listener. A ``get`` on another node of a cluster fetches it from there.
    """

    id: str
    nbytes: int = 0
    home: str = ""

    def __llmos_wire__(self) -> tuple[int, list]:
        return EXT_OBJREF, [self.id, self.nbytes, self.home] if self.home else [self.id, self.nbytes]

    @classmethod
    def from_wire(cls, payload: Any) -> ObjectRef:
        if (
            type(payload) is not list
            or len(payload) not in (2, 3)
            or type(payload[0]) is not str
            or type(payload[1]) is not int
            or (len(payload) == 3 and (type(payload[2]) is not str or len(payload[2]) > MAX_HOME))
        ):
            raise ProtocolError(f"malformed object ref: {payload!r:.200}")
        return cls(*payload)

    @property
    def pool(self) -> str:
        """The id of the page pool (one daemon run) that stored it: the id's first part."""
        return self.id.partition("-")[0]
