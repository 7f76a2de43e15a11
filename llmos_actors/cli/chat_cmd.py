"""``llmos chat [NAME]``: talk to an LLM device in the terminal; the answer is printed as its tokens come.

Lines starting with ``/`` are commands: ``/reset`` forgets the conversation,
``/stats`` prints the device's numbers, ``/exit`` (or end of input) leaves.
Ctrl-C during an answer stops it (the device drops the sequence at once).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..errors import RemoteError
from .common import kernel_for

HELP = "chat with an LLM device in the terminal (tokens printed as they come)"
#: Characters of one message accepted from the terminal.
MAX_LINE = 1 << 16


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("chat", help=HELP, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", nargs="?", default="llm", help="the device's name (default llm)")
    p.add_argument("--system", help="a system message to start the conversation with")
    p.add_argument("--max-tokens", type=int, default=512, help="tokens per answer at most (default 512)")
    p.add_argument("--temperature", type=float, default=0.7, help="0 for greedy (default 0.7)")
    p.add_argument("--priority", type=int, help="the requests' priority, 0..7")
    p.set_defaults(func=run)


def _lines(interactive: bool):
    while True:
        try:
            line = input("> ") if interactive else sys.stdin.readline()
        except EOFError:
            return
        if not interactive and not line:
            return
        yield line.rstrip("\n")[:MAX_LINE]


def _answer(device: Any, history: list[dict], args: argparse.Namespace) -> str:
    """Stream one answer to stdout; returns its text (what was printed, if interrupted)."""
    pieces: list[str] = []
    stream = device.stream("chat", history, max_tokens=args.max_tokens, temperature=args.temperature)
    try:
        for piece in stream:
            pieces.append(piece)
            sys.stdout.write(piece)
            sys.stdout.flush()
    except KeyboardInterrupt:
        sys.stdout.write(" [stopped]")
    finally:
        stream.close()
        sys.stdout.write("\n")
        sys.stdout.flush()
    return "".join(pieces)


def run(args: argparse.Namespace) -> int:
    interactive = sys.stdin.isatty()
    with kernel_for(args) as kernel:
        device = kernel.lookup(args.name)
        if args.priority is not None:
            device = device.options(priority=args.priority)
        start = [{"role": "system", "content": args.system}] if args.system else []
        history = list(start)
        if interactive:
            print(f"chatting with {args.name} (/reset, /stats, /exit; Ctrl-C stops an answer)")
        for line in _lines(interactive):
            text = line.strip()
            if not text:
                continue
            if text in ("/exit", "/quit"):
                break
            if text == "/reset":
                history = list(start)
                continue
            if text == "/stats":
                print(json.dumps(device.call("stats"), indent=2, sort_keys=True))
                continue
            history.append({"role": "user", "content": line})
            while True:
                try:
                    reply = _answer(device, history, args)
                    break
                except RemoteError as exc:
                    # Too long for the context: forget the oldest exchange and try again.
                    first = len(start)
                    too_long = "context length" in exc.remote_message or "KV budget" in exc.remote_message
                    if too_long and len(history) - first > 2:
                        del history[first : first + 2]
                        continue
                    history.pop()
                    print(f"llmos: {exc.remote_type}: {exc.remote_message}", file=sys.stderr)
                    reply = None
                    break
            if reply is not None:
                history.append({"role": "assistant", "content": reply})
    return 0
