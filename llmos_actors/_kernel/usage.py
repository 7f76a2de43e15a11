"""Live CPU% and RSS of actor processes for ``ps`` rows (psutil), sampled between two listings.

``cpu_percent`` measures since the previous call on the same ``psutil.Process``, so one
object per pid is kept while the pid is listed, and dropped when it no longer is.
"""

from __future__ import annotations

import psutil


class UsageSampler:
    """Adds ``cpu_percent``, ``rss`` and ``core`` to the rows of live actors."""

    def __init__(self) -> None:
        self.procs: dict[int, psutil.Process] = {}

    def annotate(self, rows: list[dict]) -> None:
        seen = set()
        for row in rows:
            pid = row.get("pid")
            if row["state"] == "exited" or not pid:
                continue
            seen.add(pid)
            proc = self.procs.get(pid)
            try:
                if proc is None:
                    proc = self.procs[pid] = psutil.Process(pid)
                    proc.cpu_percent(None)
                with proc.oneshot():
                    row["cpu_percent"] = proc.cpu_percent(None)
                    row["rss"] = proc.memory_info().rss
                    row["core"] = proc.cpu_num()
            except psutil.Error:
                self.procs.pop(pid, None)
        for pid in set(self.procs) - seen:
            del self.procs[pid]
