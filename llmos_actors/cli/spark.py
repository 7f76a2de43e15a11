"""Terminal sparklines: a run of numbers as block characters (``llmos top``, ``llmos stats``)."""

from __future__ import annotations

from collections.abc import Sequence

BLOCKS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float], width: int = 20, top: float | None = None) -> str:
    """The last ``width`` values, each as one of eight block heights (scaled to ``top`` or their max).

    Padded on the left with spaces, so columns of sparklines line up.
    """
    values = list(values)[-width:]
    if not values:
        return " " * width
    peak = top if top is not None else max(values)
    if peak <= 0:
        chars = BLOCKS[0] * len(values)
    else:
        last = len(BLOCKS) - 1
        chars = "".join(BLOCKS[min(last, max(0, round(v / peak * last)))] for v in values)
    return chars.rjust(width)
