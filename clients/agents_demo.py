"""Agents on the kernel: a coordinator, three workers and an urgent agent share one LLM device.

    python clients/agents_demo.py              # the default model (SmolLM2-135M-Instruct), a daemon started if needed

A coordinator agent splits a job into sub-tasks and publishes them on topics; three
reactive worker agents, each its own process pinned to a core, take them: one uses a
calculator actor, one writes to a shared blackboard, one is refused an irreversible
tool (nobody approves it). Midway a priority-7 agent arrives and the device serves it
first. Every step is printed as it happens, then what the device and the kernel did.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path
from typing import Literal

sys.path.insert(0, str(Path(__file__).resolve().parent))

from demo import start_daemon_if_needed

import llmos_actors as llmos
from llmos_actors.config import load_config
from llmos_actors.testing import wait_for

WORKERS = ("w-calc", "w-board", "w-vault")
DEFAULT_TASKS = {
    "w-calc": "Compute 17 times 23 with the calculator.",
    "w-board": "Write the status 'report drafted' to the blackboard key 'status'.",
    "w-vault": "Delete the old customer records from the vault.",
}


class Calc(llmos.Actor):
    @llmos.tool
    def multiply(self, a: float, b: float) -> float:
        """Multiply two numbers.

        Args:
            a: the first number.
            b: the second number.
        """
        return a * b

    @llmos.tool
    def add(self, a: float, b: float) -> float:
        """Add two numbers."""
        return a + b


class Vault(llmos.Actor):
    @llmos.tool(confirm=True)
    def delete_records(self, which: str) -> str:
        """Delete customer records permanently.

        Args:
            which: the records to delete.
        """
        return f"deleted {which}"


class Coordinator(llmos.Agent):
    instructions = (
        "You are a coordinator. Split the job into sub-tasks and give each worker one with the assign tool: "
        "w-calc does arithmetic, w-board writes to the blackboard, w-vault manages stored records. "
        "When every worker has a task, give the final answer."
    )
    max_steps = 4

    @llmos.tool
    def assign(self, worker: Literal["w-calc", "w-board", "w-vault"], task: str) -> str:
        """Give a worker one sub-task.

        Args:
            worker: who does it.
            task: the sub-task, in one sentence.
        """
        self.actor_kernel.publish(f"tasks.{worker}", {"task": task, "by": self.actor_name})
        return f"assigned to {worker}"


class Worker(llmos.Agent):
    instructions = "You are a worker. Do your task with your tools, then give a short final answer."
    max_steps = 3

    def on_observation(self, observation: dict) -> str | None:
        msg = observation.get("msg")
        return msg.get("task") if isinstance(msg, dict) else None


class Urgent(llmos.Agent):
    instructions = "You answer urgent questions at once with a short final answer."
    max_steps = 2


def print_steps(kernel: llmos.Kernel, stop: threading.Event, started: float) -> None:
    """Each agent's steps as they happen (they publish them on agents.<name>.step)."""
    with kernel.subscribe("agents.") as sub:
        while not stop.is_set():
            try:
                topic, msg = sub.get(timeout=0.2)
            except llmos.CallTimeout:
                continue
            except llmos.ClosedError:
                return
            at = time.monotonic() - started
            if topic.endswith(".step"):
                action = msg["action"] or "(invalid)"
                obs = "" if msg.get("observation") is None else f" -> {str(msg['observation'])[:70]}"
                args = "" if not msg.get("args") else f" {msg['args']}"
                print(f"  {at:6.1f}s {msg['agent']:<12} step {msg['step']} ({msg['ms']:>6.0f} ms) {action}{args}{obs}")
            elif topic.endswith(".result"):
                print(f"  {at:6.1f}s {msg['agent']:<12} finished: {str(msg.get('answer'))[:90]!r}")


def sample_batches(llm: llmos.ActorRef, stop: threading.Event, seen: list[int]) -> None:
    while not stop.wait(0.05):
        try:
            seen.append(int(llm.call("stats").get("batch_size", 0)))
        except llmos.LlmosError:
            return


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runtime-dir", help="daemon instance (default: $LLMOS_RUNTIME_DIR or the user's)")
    parser.add_argument("--model", help="model directory or .gguf file (default: SmolLM2-135M-Instruct)")
    args = parser.parse_args()
    config = load_config({"runtime_dir": args.runtime_dir})
    daemon = start_daemon_if_needed(config)
    stop = threading.Event()
    threads: list[threading.Thread] = []
    spawned: list[llmos.ActorRef] = []
    try:
        with llmos.connect(config=config) as kernel:
            cores = kernel.status()["inventory"]["cores"]
            print(f"cores: {cores}; loading the LLM device ...")
            t0 = time.monotonic()
            llm = kernel.spawn(llmos.LLM, args.model, name="llm", cpus=list(cores))
            spawned.append(llm)
            wait_for(lambda: llm.call("stats")["state"] != "loading", timeout=300, what="the model")
            print(f"device ready in {time.monotonic() - t0:.1f} s: {llm.call('stats')['model']}")
            for cls, name in ((Calc, "calc"), (Vault, "vault"), (llmos.Blackboard, "board")):
                spawned.append(kernel.spawn(cls, name=name, restart="permanent"))
            grants = {"w-calc": ["calc.multiply", "calc.add"], "w-board": ["board.write", "board.read"]}
            grants["w-vault"] = ["vault.delete_records"]
            for i, name in enumerate(WORKERS):
                core = cores[i % len(cores)]
                spawned.append(
                    kernel.spawn(
                        Worker, name=name, cpus=[core], priority=2, tools=grants[name], topics=[f"tasks.{name}"]
                    )
                )
            coordinator = kernel.spawn(Coordinator, name="coordinator", cpus=[cores[0]], priority=3)
            spawned.append(coordinator)

            started = time.monotonic()
            batches: list[int] = []
            for target, targs in ((print_steps, (kernel, stop, started)), (sample_batches, (llm, stop, batches))):
                threads.append(threading.Thread(target=target, args=targs, daemon=True))
                threads[-1].start()

            print("\nthe coordinator splits the job (its steps, then the workers', as they happen):")
            plan = coordinator.options(timeout=240).call("run", "Prepare the quarterly report.")
            assigned = {s["args"].get("worker") for s in plan["steps"] if s["action"] == "assign"}
            for name in WORKERS:
                if name not in assigned:  # the 135M model may stop early: the demo hands out the rest
                    print(f"  (the coordinator did not assign {name}; the demo gives it its default task)")
                    kernel.publish(f"tasks.{name}", {"task": DEFAULT_TASKS[name], "by": "demo"})

            # The urgent agent arrives midway: once a worker is deciding on the device.
            workers = [kernel.lookup(n) for n in WORKERS]
            wait_for(lambda: any(w.call("stats")["running"] for w in workers), timeout=120, what="a worker to start")
            print("\na priority-7 agent arrives while the workers run:")
            urgent = kernel.spawn(Urgent, name="urgent", cpus=[cores[-1]], priority=7)
            spawned.append(urgent)
            t_urgent = time.monotonic()
            answer = urgent.options(priority=7, timeout=300).call(
                "run", "Is the server room door locked? Say yes or no."
            )
            print(f"  urgent run took {time.monotonic() - t_urgent:.1f} s: {answer['answer']!r}")

            def workers_done() -> bool:
                return all(s["runs"] >= 1 and not s["running"] for s in (w.call("stats") for w in workers))

            wait_for(workers_done, timeout=300, interval=0.2, what="the workers to finish")
            stop.set()
            for t in threads:
                t.join(5)

            stats = llm.call("stats")
            busy = [b for b in batches if b > 0]
            print("\nthe device:")
            print(
                f"  batch size while busy: mean {sum(busy) / max(1, len(busy)):.1f}, max {max(busy, default=0)}; "
                f"preemptions {stats.get('preemptions', 0)}, prefix-cache hits {stats.get('prefix_hits', 0)}, "
                f"{stats.get('tokens_total', 0)} tokens"
            )
            decisions = llm.call("decisions", 200)
            for d in [d for d in decisions if d["action"] == "preempt"][:5]:
                print(f"  preempted sequence {d['seq']} (level {d['level']}): {d['reason']}")
            urgent_admits = [d["reason"] for d in decisions if d["action"] == "admit" and d["level"] >= 7]
            print(f"  level-7 requests admitted: {len(urgent_admits)} ({'; '.join(urgent_admits[:4])})")
            print("\nthe kernel:")
            print(f"  {'NAME':<12} {'PID':>7} {'CORES':>6} {'PRIO':>5} {'NICE':>5}")
            for row in kernel.ps(exited=False):
                if row["name"] in {r.name for r in spawned}:
                    cpus = ",".join(map(str, row["cpus"] or [])) or "-"
                    print(f"  {row['name']:<12} {row['pid']:>7} {cpus:>6} {row['priority']:>5} {row['nice']:>5}")
            board = kernel.lookup("board").call("entries")
            print(f"\nthe blackboard: {[(e['key'], e['value'], e['version']) for e in board]}")
            for name in WORKERS:
                s = kernel.lookup(name).call("stats")
                print(f"  {name}: {s['steps']} steps, {s['tool_calls']} tool calls, {s['refusals']} refusals")
    finally:
        stop.set()
        if daemon is None:
            with llmos.connect(config=config) as kernel:
                for ref in spawned:
                    try:
                        kernel.kill(ref.name, force=True)
                    except llmos.LlmosError:
                        pass
        else:
            daemon.terminate()
            daemon.wait(60)
    print("agents demo finished")
    return 0


if __name__ == "__main__":
    sys.exit(main())
