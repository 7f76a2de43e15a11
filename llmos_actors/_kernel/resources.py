"""The machine's inventory (usable cores, GPUs) and where each actor is placed.

Cores come from the daemon's own affinity mask (so a daemon confined by
systemd's CPUAffinity= or a container only hands out what it may use). GPUs are
counted through torch.cuda when an NVIDIA driver is present.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field

import psutil

from ..errors import ResourceUnavailable

#: Default actor priority (0 lowest .. 7 highest) and the nice step per level.
DEFAULT_PRIORITY = 4
NICE_STEP = 3


def nice_for(priority: int | None) -> int:
    """Map a priority (0..7, higher is more urgent) to a nice value (4 -> 0, 0 -> 12, 7 -> -9)."""
    p = DEFAULT_PRIORITY if priority is None else priority
    return max(-20, min(19, (DEFAULT_PRIORITY - p) * NICE_STEP))


def _nvidia_present() -> bool:
    return os.path.exists("/proc/driver/nvidia/gpus") or os.path.exists("/dev/nvidia0")


def _count_gpus() -> int:
    try:
        import torch
    except ImportError:
        return 0
    try:
        return int(torch.cuda.device_count())
    except Exception:
        return 0


def _fmt(ids: list[int]) -> str:
    return ",".join(map(str, ids)) if ids else "none"


@dataclass
class Placement:
    """What one actor was given."""

    cpus: list[int] | None
    gpus: list[int] | None
    exclusive: bool = False


@dataclass
class Inventory:
    """Usable devices and current assignments."""

    cores: list[int] = field(default_factory=lambda: sorted(os.sched_getaffinity(0)))
    gpus: list[int] = field(default_factory=list)
    placements: dict[str, Placement] = field(default_factory=dict)
    _gpu_ready: threading.Event = field(default_factory=threading.Event)

    def detect_gpus(self) -> None:
        """Count GPUs in the background (importing torch takes a second)."""
        if not _nvidia_present():
            self._gpu_ready.set()
            return

        def probe() -> None:
            self.gpus = list(range(_count_gpus()))
            self._gpu_ready.set()

        threading.Thread(target=probe, name="llmos-gpu-probe", daemon=True).start()

    def gpus_known(self, timeout: float = 30.0) -> bool:
        return self._gpu_ready.wait(timeout)

    # ------------------------------------------------------------------ load
    def core_load(self) -> dict[int, float]:
        """Actors pinned per core (an actor on k cores counts 1/k each), plus recent CPU use."""
        load = {c: 0.0 for c in self.cores}
        for place in self.placements.values():
            if place.cpus:
                for c in place.cpus:
                    if c in load:
                        load[c] += 1.0 / len(place.cpus)
        try:
            percent = psutil.cpu_percent(percpu=True)
        except Exception:
            percent = []
        for c in load:
            if c < len(percent):
                load[c] += percent[c] / 1000.0  # tie-breaker only
        return load

    def reserved_cores(self) -> dict[int, str]:
        """Cores reserved exclusively: core -> actor id."""
        return self._reserved("cpus")

    def _reserved(self, kind: str, owner: str | None = None) -> dict[int, str]:
        taken: dict[int, str] = {}
        for actor_id, place in self.placements.items():
            if place.exclusive and actor_id != owner:
                for i in getattr(place, kind) or ():
                    taken[i] = actor_id
        return taken

    # ------------------------------------------------------------------ placing
    def place(self, actor_id: str, cpus: object, gpus: object, exclusive: bool = False) -> Placement:
        """Resolve and record an actor's cores and GPUs.

        Args:
            cpus: None (no pinning), "auto" (least loaded core), a count, or a list of core ids.
            gpus: None, "auto" (one free GPU), a count, or a list of GPU ids.
            exclusive: reserve them: no other actor may be placed there meanwhile.

        Raises:
            ResourceUnavailable: ids outside the inventory, or reserved by another actor.
        """
        reserved_cores = self._reserved("cpus", actor_id)
        reserved_gpus = self._reserved("gpus", actor_id)
        chosen_cpus = self._choose_cpus(cpus, reserved_cores, exclusive)
        chosen_gpus = self._choose_gpus(gpus, reserved_gpus, exclusive)
        placement = Placement(chosen_cpus, chosen_gpus, exclusive)
        self.placements[actor_id] = placement
        return placement

    def _choose_cpus(self, cpus: object, reserved: dict[int, str], exclusive: bool) -> list[int] | None:
        if cpus is None:
            return None
        free = [c for c in self.cores if c not in reserved]
        if cpus == "auto" or isinstance(cpus, int):
            n = 1 if cpus == "auto" else int(cpus)  # type: ignore[call-overload]
            if n > len(free):
                raise ResourceUnavailable(
                    f"asked for {n} core(s) but only {len(free)} of {len(self.cores)} are free "
                    f"(usable: {_fmt(self.cores)}; reserved: {_fmt(sorted(reserved))})"
                )
            load = self.core_load()
            return sorted(sorted(free, key=lambda c: (load[c], c))[:n])
        wanted = sorted(set(cpus))  # type: ignore[call-overload]
        missing = [c for c in wanted if c not in self.cores]
        if missing:
            raise ResourceUnavailable(
                f"core(s) {_fmt(missing)} not available: this daemon may use cores {_fmt(self.cores)}"
            )
        taken = [c for c in wanted if c in reserved]
        if taken:
            raise ResourceUnavailable(f"core(s) {_fmt(taken)} are reserved exclusively by actor {reserved[taken[0]]}")
        if exclusive:
            shared = [c for c in wanted if any(c in (p.cpus or ()) for p in self.placements.values())]
            if shared:
                raise ResourceUnavailable(f"core(s) {_fmt(shared)} already run other actors; cannot reserve them")
        return wanted

    def _choose_gpus(self, gpus: object, reserved: dict[int, str], exclusive: bool) -> list[int] | None:
        if gpus is None:
            return None
        self.gpus_known()
        free = [g for g in self.gpus if g not in reserved]
        if gpus == "auto" or isinstance(gpus, int):
            n = 1 if gpus == "auto" else int(gpus)  # type: ignore[call-overload]
            if n > len(free):
                raise ResourceUnavailable(
                    f"asked for {n} GPU(s) but {len(free)} of {len(self.gpus)} are free"
                    + ("" if self.gpus else " (no GPUs found on this machine)")
                )
            used = {g: sum(g in (p.gpus or ()) for p in self.placements.values()) for g in free}
            return sorted(sorted(free, key=lambda g: (used[g], g))[:n])
        wanted = sorted(set(gpus))  # type: ignore[call-overload]
        missing = [g for g in wanted if g not in self.gpus]
        if missing:
            raise ResourceUnavailable(f"GPU(s) {_fmt(missing)} not available: this machine has GPUs {_fmt(self.gpus)}")
        taken = [g for g in wanted if g in reserved]
        if taken:
            raise ResourceUnavailable(f"GPU(s) {_fmt(taken)} are reserved exclusively by actor {reserved[taken[0]]}")
        if exclusive:
            shared = [g for g in wanted if any(g in (p.gpus or ()) for p in self.placements.values())]
            if shared:
                raise ResourceUnavailable(f"GPU(s) {_fmt(shared)} already serve other actors; cannot reserve them")
        return wanted

    def release(self, actor_id: str) -> None:
        self.placements.pop(actor_id, None)

    def child_env(self, placement: Placement) -> dict[str, str]:
        """Environment that confines an actor to its GPUs (none, when the machine has some)."""
        if placement.gpus is not None:
            return {"CUDA_VISIBLE_DEVICES": ",".join(map(str, placement.gpus))}
        if self.gpus:
            return {"CUDA_VISIBLE_DEVICES": ""}
        return {}

    def describe(self) -> dict:
        reserved = self._reserved("cpus")
        return {
            "cores": self.cores,
            "gpus": self.gpus,
            "reserved_cores": sorted(reserved),
            "reserved_gpus": sorted(self._reserved("gpus")),
            "core_load": {str(c): round(v, 3) for c, v in self.core_load().items()},
        }
