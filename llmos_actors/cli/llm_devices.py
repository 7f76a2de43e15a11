"""What ``llmos ps`` and ``llmos top`` show of LLM devices: tokens/s, batch size and KV use, from each device's
``stats``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import LlmosError
from .common import table

#: Seconds a device has to answer ``stats`` before the listing goes on without it.
STATS_TIMEOUT = 2.0
HEADERS = ("DEVICE", "MODEL", "STATE", "TOK/S", "BATCH", "RUN", "WAIT", "PREEMPT", "KV BLOCKS", "PREFIX HITS")


def is_device(row: dict) -> bool:
    module, _, name = (row.get("cls") or "").partition(":")
    return name == "LLM" and module.startswith("llmos_actors.llm")


def device_stats(kernel: Any, rows: list[dict]) -> dict[str, dict]:
    """``stats`` of every live LLM device among ``rows``, by actor id, asked all at once."""
    asked = {}
    for row in rows:
        if row["state"] != "exited" and is_device(row):
            try:
                asked[row["id"]] = kernel.lookup(row["id"]).options(timeout=STATS_TIMEOUT).ask("stats")
            except LlmosError:
                continue
    out = {}
    for actor_id, future in asked.items():
        try:
            out[actor_id] = future.result(timeout=STATS_TIMEOUT + 1)
        except (LlmosError, TimeoutError):
            continue  # busy or gone: the listing goes on without it
    return out


def _kv(s: dict) -> str:
    used, free = s.get("kv_blocks_used"), s.get("kv_blocks_free")
    if used is None or free is None:
        return "-"
    total = used + free
    return f"{used}/{total} ({100 * used / total:.0f}%)" if total else "0/0"


def device_rows(rows: list[dict], stats: dict[str, dict]) -> list[tuple]:
    out = []
    for row in rows:
        s = stats.get(row["id"])
        if s is None:
            continue
        out.append(
            (
                row["name"] or row["id"],
                s.get("model"),
                s.get("state"),
                f"{s['tokens_per_s']:.1f}" if s.get("tokens_per_s") is not None else None,
                s.get("batch_size"),
                s.get("running"),
                s.get("waiting"),
                s.get("preempted"),
                _kv(s),
                s.get("prefix_hits"),
            )
        )
    return out


def print_devices(rows: list[dict], stats: dict[str, dict], out: Callable[[str], None] = print) -> None:
    """The devices' table, after a blank line; nothing when there is no device."""
    lines = device_rows(rows, stats)
    if lines:
        out("")
        table(lines, HEADERS, out)
