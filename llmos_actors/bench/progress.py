"""A progress bar on stderr (one line per step when stderr is not a terminal)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Call ``update(done, total, label)`` before each step; ``close()`` clears the bar.

    Args:
        stream: where it draws (stderr, so stdout stays the table alone).
        enabled: False draws nothing.
    """

    WIDTH = 24

    def __init__(self, stream: TextIO | None = None, *, enabled: bool = True) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.tty = self.stream.isatty()
        self.t0 = time.monotonic()
        self._drawn = False

    def update(self, done: int, total: int, label: str) -> None:
        if not self.enabled or not total:
            return
        elapsed = time.monotonic() - self.t0
        if self.tty:
            filled = self.WIDTH * done // total
            bar = "#" * filled + "." * (self.WIDTH - filled)
            self.stream.write(f"\r\x1b[K[{bar}] {done}/{total} {elapsed:5.0f}s  {label}"[:200])
            self._drawn = True
        elif done < total:
            self.stream.write(f"llmos bench: [{done + 1}/{total}] {elapsed:.0f}s {label}\n")
        self.stream.flush()

    def close(self) -> None:
        if self._drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._drawn = False
