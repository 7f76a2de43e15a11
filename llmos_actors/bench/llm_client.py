"""A client process of the LLM benchmark: streams chat answers from a device when told to.

    python -m llmos_actors.bench.llm_client RUNTIME_DIR DEVICE

Prints ``ready`` once connected, then reads one JSON job per line from stdin:
``{"messages": [...], "max_tokens": n, "priority": p}`` answers with one line
``{"tokens": n, "first": t, "end": t}`` (``time.monotonic()``, which every process
on the machine shares); with ``"loop": true`` it streams answer after answer until
the next line (or the end of stdin), then answers ``{"answers": n}``. Its own
process, like an agent's, so the clients never share a GIL with each other or the
measuring process.
"""

from __future__ import annotations

import json
import select
import sys
import time

import llmos_actors as llmos


def _stream(device, job: dict) -> dict:
    first = None
    info: dict = {}
    for item in device.stream("complete", messages=job["messages"], max_tokens=job["max_tokens"], ignore_eos=True):
        if isinstance(item, dict):
            info = item
        elif first is None:
            first = time.monotonic()
    return {"tokens": info.get("tokens", 0), "first": first, "end": time.monotonic()}


def main(argv: list[str]) -> int:
    runtime_dir, name = argv[0], argv[1]
    with llmos.connect(runtime_dir) as kernel:
        device = kernel.lookup(name)
        print("ready", flush=True)
        for line in sys.stdin:
            job = json.loads(line)
            ref = device.options(priority=int(job.get("priority", 0)))
            if not job.get("loop"):
                print(json.dumps(_stream(ref, job)), flush=True)
                continue
            answers = 0
            while not select.select([sys.stdin], [], [], 0)[0]:
                _stream(ref, job)
                answers += 1
            print(json.dumps({"answers": answers}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
