"""``llmos status``: the daemon's own state (pid, uptime, inventory, actor counts)."""

from __future__ import annotations

import argparse

from .common import human_bytes, kernel_for, print_json

HELP = "show the daemon's state"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help=HELP, description=__doc__)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


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
    for key, section in info.items():
        if isinstance(section, dict) and key not in ("inventory", "actors", "fork_server"):
            shown = {k: (human_bytes(v) if k.endswith("bytes") else v) for k, v in section.items()}
            if shown:
                print(f"{key:<12} " + ", ".join(f"{k}={v}" for k, v in shown.items()))
    return 0
