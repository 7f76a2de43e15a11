"""``llmos status``: the daemon's own state (pid, uptime, inventory, actor counts)."""

from __future__ import annotations

import argparse

from .common import human_bytes, kernel_for, print_json

HELP = "show the daemon's state"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help=HELP, description=__doc__)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def _print_supervision(section: dict) -> None:
    if not section:
        return
    line = f"supervisors {section.get('supervisors', 0)}  restarts {section.get('restarts', 0)}"
    line += f"  restarting now {section.get('restarting', 0)}  gave up {section.get('gave_up', 0)}"
    if section.get("restart_ms_p50") is not None:
        line += f"  restart p50 {section['restart_ms_p50']} ms  p99 {section['restart_ms_p99']} ms"
    print(f"{'supervision':<12} {line}")


def _print_sync(section: dict) -> None:
    """Sync objects: counts, what is held and who waits, and deadlocks (refused or present)."""
    if not section:
        return
    counts = ", ".join(f"{n} {k}" for k, n in sorted((section.get("objects") or {}).items())) or "none"
    print(
        f"{'sync':<12} {counts}  deadlocks refused {section.get('deadlocks_detected', 0)}"
        f"  released from gone holders {section.get('released_gone_holders', 0)}"
    )
    for obj in section.get("busy") or []:
        held = obj.get("holder") or ", ".join(obj.get("holders") or []) or "-"
        waiting = obj.get("waiters", obj.get("waiting", 0))
        print(f"  {obj['kind']} {obj['name']!r}: held by {held}; {waiting} waiting")
    for wait in section.get("waits") or []:
        print(f"  wait: {wait['waiter']} -> {wait['on']} (held by {wait['held_by'] or '-'})")
    for cycle in section.get("cycles_now") or []:
        print("  DEADLOCK now: " + " -> ".join(cycle))
    for entry in (section.get("deadlocks") or [])[-3:]:
        print("  refused: " + " -> ".join(entry["cycle"]))


def run(args: argparse.Namespace) -> int:
    with kernel_for(args) as kernel:
        info = kernel.status()
    if args.json:
        print_json(info)
        return 0
    inv = info.get("inventory", {})
    actors = info.get("actors", {})
    print(f"llmos daemon {info['version']}  pid {info['pid']}  up {info['uptime']:.0f} s")
    print(f"runtime dir  {info['runtime_dir']}")
    print(f"state dir    {info['state_dir']}")
    print(f"cores        {inv.get('cores')}  (reserved: {inv.get('reserved_cores') or 'none'})")
    print(f"gpus         {inv.get('gpus') or 'none'}")
    print("actors       " + (", ".join(f"{n} {s}" for s, n in sorted(actors.items())) or "none"))
    fork = info.get("fork_server", {})
    print(f"fork server  pid {fork.get('pid')}  preloaded: {', '.join(fork.get('preloaded') or []) or 'nothing'}")
    if info.get("spawn_ms_p50") is not None:
        print(f"spawn p50    {info['spawn_ms_p50']} ms")
    _print_supervision(info.get("supervisor") or {})
    _print_sync(info.get("sync") or {})
    for key, section in info.items():
        if isinstance(section, dict) and key not in ("inventory", "actors", "fork_server", "supervisor", "sync"):
            shown = {k: (human_bytes(v) if k.endswith("bytes") else v) for k, v in section.items()}
            if shown:
                print(f"{key:<12} " + ", ".join(f"{k}={v}" for k, v in shown.items()))
    return 0
