"""``llmos pub`` / ``llmos sub``: publish a JSON message, or print a topic's messages as JSON lines."""

from __future__ import annotations

import argparse
import sys

from ..errors import CallTimeout
from .common import dumps, kernel_for, parse_json_arg

HELP_PUB = "publish a JSON message on a topic"
HELP_SUB = "print messages on topics with a prefix, one JSON line each, until interrupted"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pub", help=HELP_PUB, description=HELP_PUB)
    p.add_argument("topic", metavar="TOPIC")
    p.add_argument("message", metavar="JSON", help="the message, a JSON value")
    p.set_defaults(func=run_pub)
    s = sub.add_parser("sub", help=HELP_SUB, description=HELP_SUB)
    s.add_argument("prefix", metavar="TOPIC", help="topic prefix ('' for everything, 'sys.' for the daemon's events)")
    s.add_argument("--count", type=int, help="stop after this many messages")
    s.add_argument("--timeout", type=float, help="stop when nothing arrives for this many seconds")
    s.set_defaults(func=run_sub)


def run_pub(args: argparse.Namespace) -> int:
    message = parse_json_arg(args.message, "message")
    with kernel_for(args) as kernel:
        kernel.publish(args.topic, message)
    return 0


def run_sub(args: argparse.Namespace) -> int:
    seen = 0
    with kernel_for(args) as kernel, kernel.subscribe(args.prefix) as subscription:
        print(dumps({"subscribed": args.prefix}), flush=True)
        while args.count is None or seen < args.count:
            try:
                topic, msg = subscription.get(timeout=args.timeout)
            except CallTimeout:
                break
            print(dumps({"topic": topic, "msg": msg}), flush=True)
            seen += 1
        if subscription.dropped:
            print(f"llmos: missed {subscription.dropped} message(s) (subscriber too slow)", file=sys.stderr)
    return 0
