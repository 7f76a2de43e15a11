"""``llmos serve-openai``: put an OpenAI-compatible HTTP endpoint in front of LLM devices.

The endpoint is an actor (``--name``, default ``openai``) that the daemon keeps;
this command starts it, prints its base URL and returns. Stop it with
``llmos kill openai``.
"""

from __future__ import annotations

import argparse
import os

from .common import kernel_for, print_json
from .spawn_cmd import cpus_arg

HELP = "serve LLM devices over an OpenAI-compatible HTTP API (/v1/chat/completions, ...)"
EPILOG = """examples:
  llmos serve-openai --llm llm --listen 127.0.0.1:8000
  llmos serve-openai --llm llm,coder --listen 0.0.0.0:8000 --api-key-file ~/.llmos/openai.key
then: openai.OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="-").chat.completions.create(model="llm", ...)
priority per request: the header X-Llmos-Priority: 0..7"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve-openai",
        help=HELP,
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--llm", default="llm", help="the device name(s), comma-separated; each is a model id (default llm)")
    p.add_argument("--listen", default="127.0.0.1:8000", help="HOST:PORT to bind (default 127.0.0.1:8000)")
    p.add_argument("--name", default="openai", help="the endpoint actor's name (default openai)")
    p.add_argument("--api-key-file", help="clients must send this file's key as 'Authorization: Bearer KEY'")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds a device may take per piece (default 600)")
    p.add_argument("--cpus", type=cpus_arg, help="cores to pin the endpoint to (default: any)")
    p.add_argument("--restart", choices=("permanent", "transient", "temporary"), help="restart policy")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..llm.openai_server import OpenAIServer, parse_listen

    parse_listen(args.listen)  # a typo fails here, before anything starts
    devices = [d.strip() for d in args.llm.split(",") if d.strip()]
    key_file = os.path.abspath(os.path.expanduser(args.api_key_file)) if args.api_key_file else None
    options = {k: v for k, v in {"name": args.name, "cpus": args.cpus, "restart": args.restart}.items() if v}
    with kernel_for(args) as kernel:
        for device in devices:
            kernel.lookup(device)  # ActorNotFound: a clear error, exit status 3
        ref = kernel.spawn_with(
            OpenAIServer,
            [devices, args.listen],
            {"api_key_file": key_file, "request_timeout": args.timeout},
            **options,
        )
        url = ref.call("address")
    if args.json:
        print_json({"name": ref.name, "id": ref.id, "url": url, "models": devices})
    else:
        print(f"OpenAI endpoint {url}  models: {', '.join(devices)}  (actor {ref.name}; stop: llmos kill {ref.name})")
    return 0
