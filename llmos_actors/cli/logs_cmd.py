"""``llmos logs NAME [-f]``: an actor's captured stdout, stderr and log records."""

from __future__ import annotations

import argparse
import time

from .common import kernel_for

HELP = "show an actor's output (-f to follow)"
FOLLOW_INTERVAL = 0.25


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("logs", help=HELP, description=__doc__)
    p.add_argument("actor", metavar="NAME", help="actor name or id (logs outlive the actor)")
    p.add_argument("-n", "--lines", type=int, default=100, help="how many of the last lines (default 100)")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new lines until interrupted")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    with kernel_for(args) as kernel:
        out = kernel.logs(args.actor, lines=args.lines)
        for line in out["lines"]:
            print(line, flush=True)
        offset = out["offset"]
        while args.follow:
            time.sleep(FOLLOW_INTERVAL)  # polling the daemon: a file tail, not a synchronisation
            out = kernel.logs(args.actor, lines=0, offset=offset)
            for line in out["lines"]:
                print(line, flush=True)
            offset = out["offset"]
    return 0
