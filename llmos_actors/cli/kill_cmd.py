"""``llmos kill NAME``: stop an actor (SIGTERM, then SIGKILL after the grace period)."""

from __future__ import annotations

import argparse

from .common import kernel_for, print_json

HELP = "stop an actor"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("kill", help=HELP, description=__doc__)
    p.add_argument("actor", metavar="NAME", help="actor name or id")
    p.add_argument("--force", action="store_true", help="SIGKILL at once")
    p.add_argument("--grace", type=float, help="seconds between SIGTERM and SIGKILL")
    p.add_argument(
        "--cancel", action="store_true", help="cancel calls in flight at once (default: let them finish within --grace)"
    )
    p.add_argument("--json", action="store_true", help="print the exit record as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    with kernel_for(args) as kernel:
        record = kernel.kill(args.actor, force=args.force, grace=args.grace, drain=not args.cancel)
    if args.json:
        print_json(record)
    else:
        print(f"{args.actor}: {record.get('reason', 'exited')}")
    return 0
