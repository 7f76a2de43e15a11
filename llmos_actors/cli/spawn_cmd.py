"""``llmos spawn MODULE:CLASS``: start an actor and print its id and pid."""

from __future__ import annotations

import argparse

from .common import kernel_for, parse_json_arg, print_json

HELP = "start an actor from an importable class"


def cpus_arg(text: str):
    """Core (or GPU) ids '0' or '0,1'; 'auto' for the least loaded one; 'auto:N' for N of them."""
    text = text.strip()
    if text == "auto":
        return text
    if text.startswith("auto:"):
        return int(text[5:])
    try:
        return [int(x) for x in text.strip("[]").split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected ids like '0,1', 'auto' or 'auto:N', not {text!r}") from None


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("spawn", help=HELP, description=__doc__)
    p.add_argument("cls", metavar="MODULE:CLASS", help="the actor class, importable by the daemon")
    p.add_argument("--name", help="a unique name to look the actor up by")
    p.add_argument(
        "--cpus", type=cpus_arg, help="cores to pin to: '0,1', 'auto' (least loaded core) or 'auto:N' (N least loaded)"
    )
    p.add_argument("--gpus", type=cpus_arg, help="GPUs: '0,1', 'auto' or 'auto:N'")
    p.add_argument("--priority", type=int, help="0 (lowest) .. 7 (highest); default 4")
    p.add_argument("--restart", choices=("permanent", "transient", "temporary"), help="restart policy")
    p.add_argument("--supervisor", help="the supervisor (name or id) to start it under")
    p.add_argument("--exclusive", action="store_true", help="reserve the cores/GPUs for this actor alone")
    p.add_argument("--args", default="[]", help="constructor arguments as a JSON array")
    p.add_argument("--kwargs", default="{}", help="constructor keyword arguments as a JSON object")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    ctor_args = parse_json_arg(args.args, "--args")
    ctor_kwargs = parse_json_arg(args.kwargs, "--kwargs")
    if not isinstance(ctor_args, list) or not isinstance(ctor_kwargs, dict):
        raise SystemExit("llmos: --args must be a JSON array and --kwargs a JSON object")
    options = {
        k: v
        for k, v in dict(
            name=args.name,
            cpus=args.cpus,
            gpus=args.gpus,
            priority=args.priority,
            restart=args.restart,
            supervisor=args.supervisor,
            exclusive=args.exclusive or None,
        ).items()
        if v is not None
    }
    with kernel_for(args) as kernel:
        ref = kernel.spawn_with(args.cls, ctor_args, ctor_kwargs, **options)
        row = next((r for r in kernel.ps() if r["id"] == ref.id), {"id": ref.id})
    if args.json:
        print_json(row)
    else:
        cpus = ",".join(map(str, row.get("cpus") or [])) or "any"
        print(f"{ref.name or ref.id}  id={ref.id}  pid={row.get('pid')}  cpus={cpus}  priority={row.get('priority')}")
    return 0
