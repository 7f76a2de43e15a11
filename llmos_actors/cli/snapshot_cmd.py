"""``llmos snapshot NAME``: take an actor's snapshot now (its ``on_snapshot()`` value, stored by the daemon)."""

from __future__ import annotations

import argparse

from .common import kernel_for, print_json

HELP = "take an actor's snapshot now"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("snapshot", help=HELP, description=__doc__)
    p.add_argument("actor", metavar="NAME", help="actor name or id")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds the actor gets to answer")
    p.add_argument("--json", action="store_true", help="print what was stored as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    with kernel_for(args) as kernel:
        info = kernel.snapshot(args.actor, timeout=args.timeout)
    if args.json:
        print_json(info)
    else:
        print(f"{args.actor}: {info['size']} bytes -> {info['file']}")
    return 0
