"""``llmos keygen NAME``: a CurveZMQ key pair for reaching a daemon over TCP.

Writes NAME.key (secret, mode 0600) and NAME.pub in ~/.config/llmos (or --dir). Give
NAME.pub to the daemon's operator, who puts it in the daemon's authorized_keys
directory; then: llmos --connect tcp://host:7700 --key ~/.config/llmos/NAME.key
--server-key SERVER.pub ps
"""

from __future__ import annotations

import argparse

from ..keys import DEFAULT_KEY_DIR, generate_keypair

HELP = "make a CurveZMQ key pair for remote (TCP) access"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("keygen", help=HELP, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", metavar="NAME", help="the key's name (your identity on daemons that authorize it)")
    p.add_argument("--dir", default=str(DEFAULT_KEY_DIR), help=f"where to write the files (default {DEFAULT_KEY_DIR})")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    secret, public = generate_keypair(args.name, args.dir)
    print(f"secret key: {secret} (keep it private)")
    print(f"public key: {public}: {public.read_text().strip()}")
    return 0
