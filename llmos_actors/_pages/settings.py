"""The ``[pages]`` section of the daemon config, and how big the pool may be on this host.

The pool is a memfd (tmpfs-backed, like /dev/shm): its pages count against the same
shared-memory budget. A container's /dev/shm is often tiny (Docker: 64 MiB, ray#13619),
and that is where operators express how much shared memory a host may use, so the pool
is checked against it and refused with a clear message rather than failing later with
SIGBUS on first touch.
"""

from __future__ import annotations

import mmap
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ..errors import ConfigError

KIB = 1 << 10
MIB = 1 << 20
GIB = 1 << 30

#: Smallest pool worth having; below this the daemon warns that large tensors will not fit.
SMALL_POOL = 64 * MIB

_UNITS = {"": 1, "b": 1, "k": KIB, "kb": KIB, "kib": KIB, "m": MIB, "mb": MIB, "mib": MIB, "g": GIB, "gb": GIB}
_UNITS.update({"gib": GIB, "t": GIB << 10, "tb": GIB << 10, "tib": GIB << 10})
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(value: Any, key: str) -> int:
    """Bytes from an int or a string like ``"512MiB"`` / ``"2G"`` (binary units).

    Raises:
        ConfigError: not a size.
    """
    if isinstance(value, bool):
        raise ConfigError(f"[pages] {key}: {value!r} is not a size")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        m = _SIZE_RE.match(value)
        if m and m.group(2).lower() in _UNITS:
            return int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    raise ConfigError(f"[pages] {key}: {value!r} is not a size (bytes, or a string like '512MiB')")


def human(n: float) -> str:
    for unit, size in (("GiB", GIB), ("MiB", MIB), ("KiB", KIB)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


@dataclass(frozen=True, slots=True)
class PagesSettings:
    """Settings of the shared-memory pool. Sizes in bytes, durations in seconds.

    Attributes:
        enabled: run the pool at all (off: arrays and tensors travel inline, copied).
        size: pool size; 0 means automatic (half of /dev/shm, at most a quarter of available memory).
        page_size: allocation granule of the page table (a power of two, >= the OS page).
        chunk_size: arena chunk a process gets at once for small allocations.
        inline_threshold: arrays/tensors smaller than this travel inside the message (copied).
        alloc_timeout: how long an allocation waits for space (after spilling) before PagesExhausted.
        transfer_ttl: how long a handle in flight keeps its pages if no receiver takes it.
        quarantine: after a transfer expires, its pages stay unused this long (late receivers revive them).
        spill_dir: where least recently used objects go when the pool is full (default: state_dir/spill).
        trim_above: free pool memory kept resident (fast to reuse); beyond it the daemon gives
            free pages back to the system (highest addresses first, once a second).
    """

    enabled: bool = True
    size: int = 0
    page_size: int = 64 * KIB
    chunk_size: int = 4 * MIB
    inline_threshold: int = 64 * KIB
    alloc_timeout: float = 10.0
    transfer_ttl: float = 300.0
    quarantine: float = 10.0
    spill_dir: Path | None = None
    trim_above: int = 1 * GIB

    def check(self) -> PagesSettings:
        ps = self.page_size
        if ps < mmap.PAGESIZE or ps & (ps - 1):
            raise ConfigError(f"[pages] page_size must be a power of two >= {mmap.PAGESIZE}, not {ps}")
        if self.chunk_size < ps or self.chunk_size % ps:
            raise ConfigError(f"[pages] chunk_size must be a multiple of page_size ({ps}), not {self.chunk_size}")
        if self.size and self.size < 4 * self.chunk_size:
            raise ConfigError(
                f"[pages] size {human(self.size)} is too small: at least 4 x chunk_size ({human(4 * self.chunk_size)})"
            )
        if self.inline_threshold < 0 or self.trim_above < 0:
            raise ConfigError("[pages] inline_threshold and trim_above must be >= 0")
        for key in ("alloc_timeout", "transfer_ttl", "quarantine"):
            if not getattr(self, key) > 0:
                raise ConfigError(f"[pages] {key} must be > 0 seconds")
        return self


_FIELDS = {f.name for f in fields(PagesSettings)}
_SIZE_KEYS = ("size", "page_size", "chunk_size", "inline_threshold", "trim_above")


def settings_from(extra: Mapping[str, Any], state_dir: Path) -> PagesSettings:
    """Validate ``config.extra["pages"]`` (the ``[pages]`` TOML table).

    Raises:
        ConfigError: an unknown key or a bad value, named in the message.
    """
    raw = extra.get("pages") or {}
    if not isinstance(raw, Mapping):
        raise ConfigError("[pages] must be a table of settings")
    unknown = set(raw) - _FIELDS
    if unknown:
        raise ConfigError(f"unknown [pages] keys: {', '.join(sorted(unknown))} (known: {', '.join(sorted(_FIELDS))})")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key in _SIZE_KEYS:
            values[key] = 0 if key == "size" and value in ("auto", 0) else parse_size(value, key)
        elif key == "enabled":
            if not isinstance(value, bool):
                raise ConfigError(f"[pages] enabled must be true or false, not {value!r}")
            values[key] = value
        elif key == "spill_dir":
            values[key] = Path(str(value)).expanduser()
        else:
            try:
                values[key] = float(value)
            except (TypeError, ValueError):
                raise ConfigError(f"[pages] {key}: {value!r} is not a number of seconds") from None
    values.setdefault("spill_dir", state_dir / "spill")
    return PagesSettings(**values).check()


def shm_capacity(path: str = "/dev/shm") -> int | None:
    """Total bytes of the tmpfs at ``path`` (None if there is none)."""
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_blocks * st.f_frsize


def mem_available() -> int:
    """MemAvailable from /proc/meminfo (bytes), or physical memory if unreadable."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * KIB
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def region_size(
    settings: PagesSettings,
    *,
    shm: Callable[[], int | None] = shm_capacity,
    available: Callable[[], int] = mem_available,
) -> tuple[int, str]:
    """The page region size to create and a note for the log when it is small.

    Raises:
        ConfigError: a configured size larger than the host's shared memory (/dev/shm).
    """
    cap = shm()
    ps = settings.page_size
    if settings.size:
        if cap is not None and settings.size > cap:
            raise ConfigError(
                f"[pages] size {human(settings.size)} exceeds this host's shared memory: /dev/shm is "
                f"{human(cap)}. Lower [pages] size, or give the host more shared memory (e.g. "
                "`docker run --shm-size=8g`, or remount /dev/shm with a larger size=)"
            )
        return settings.size // ps * ps, ""
    limit = available() // 4
    if cap is not None:
        limit = min(limit, cap // 2)
    size = max(limit // ps * ps, 4 * settings.chunk_size)
    note = ""
    if size < SMALL_POOL:
        note = (
            f"shared-memory pool is only {human(size)} because /dev/shm is {human(cap or 0)}: tensors larger "
            "than that cannot be shared and allocations will fail with PagesExhausted (was PoolExhausted); give the "
            "host more shared memory (e.g. `docker run --shm-size=8g`) or set [pages] size"
        )
    return size, note
