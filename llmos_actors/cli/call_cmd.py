"""``llmos call`` / ``llmos tell``: invoke an actor's method with JSON arguments."""

from __future__ import annotations

import argparse

from .common import dumps, kernel_for, parse_json_arg

HELP_CALL = "call an actor's method and print the result as JSON"
HELP_TELL = "send a one-way message to an actor's method"


def _add(sub: argparse._SubParsersAction, name: str, help_text: str, func) -> None:
    p = sub.add_parser(name, help=help_text, description=help_text)
    p.add_argument("actor", metavar="NAME", help="actor name or id")
    p.add_argument("method", metavar="METHOD")
    p.add_argument("args", metavar="ARG_JSON", nargs="*", help="positional arguments, each a JSON value")
    p.add_argument("--kwargs", default="{}", help="keyword arguments as a JSON object")
    p.add_argument("--timeout", type=float, help="seconds before giving up")
    p.add_argument("--priority", type=int, help="message priority 0..7")
    p.set_defaults(func=func)


def register(sub: argparse._SubParsersAction) -> None:
    _add(sub, "call", HELP_CALL, run_call)
    _add(sub, "tell", HELP_TELL, run_tell)


def _prepare(args: argparse.Namespace):
    values = [parse_json_arg(a, f"argument {i + 1}") for i, a in enumerate(args.args)]
    kwargs = parse_json_arg(args.kwargs, "--kwargs")
    if not isinstance(kwargs, dict):
        raise SystemExit("llmos: --kwargs must be a JSON object")
    options = {k: v for k, v in (("timeout", args.timeout), ("priority", args.priority)) if v is not None}
    return values, kwargs, options


def run_call(args: argparse.Namespace) -> int:
    values, kwargs, options = _prepare(args)
    with kernel_for(args) as kernel:
        ref = kernel.lookup(args.actor)
        if options:
            ref = ref.options(**options)
        result = ref.call(args.method, *values, **kwargs)
    print(dumps(result))
    return 0


def run_tell(args: argparse.Namespace) -> int:
    values, kwargs, options = _prepare(args)
    with kernel_for(args) as kernel:
        ref = kernel.lookup(args.actor)
        if options:
            ref = ref.options(**options)
        ref.tell(args.method, *values, **kwargs)
    return 0
