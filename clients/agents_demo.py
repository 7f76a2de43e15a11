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
import itertools
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
#: The job, in the parts the coordinator hands out (it decides which worker takes which part).
PARTS = (
    "Compute 17 times 23.",
    "Write the status 'report drafted' to the new blackboard key 'status'.",
    "Delete the old customer records.",
)
JOB = " ".join(PARTS)
TOPICS = ("arithmetic", "blackboard", "records")
#: The coordinator's choices: every way of giving each worker exactly one part of the job.
PLANS = tuple(
    ", ".join(f"{w}: {t}" for w, t in zip(WORKERS, topics, strict=True)) for topics in itertools.permutations(TOPICS)
)
NAMES = ("llm", "calc", "vault", "board", *WORKERS, "coordinator", "urgent")
#: Seconds each phase may take at most (a loaded 2-core machine is many times slower than a quiet one).
PHASE_TIMEOUT = 600


class Calc(llmos.Actor):
    @llmos.tool
    def multiply(self, a: int, b: int) -> int:
        """Multiply two numbers.

        Args:
            a: the first number.
            b: the second number.
        """
        return a * b


class Vault(llmos.Actor):
    @llmos.tool(confirm=True)
    def delete_records(self, which: str) -> str:
        """Delete customer records permanently.

        Args:
            which: the records to delete.
        """
        return f"deleted {which}"


class ToolThenAnswer(llmos.LLMPolicy):
    """A procedure a 135M model keeps to: call a tool first, call again only after a failed call
    (an error, or a blackboard write that lost its compare-and-set), then answer.

    The device still decides which tool, with which arguments, and what to answer; the schema only
    leaves out the forms that do not fit the step (left free, the small model repeats a tool call that
    worked). A refusal is not retried: asking again would be refused again.
    """

    async def decide(self, request: llmos.agents.DecisionRequest, kernel: object) -> llmos.agents.Proposal:
        last = str(request.messages[-1]["content"]) if request.step > 1 else ""
        failed = last.startswith("Observation: error:") or '"ok": false' in last
        request.restrict(final=not (request.step == 1 or (failed and request.step < request.max_steps)))
        return await super().decide(request, kernel)


class DemoAgent(llmos.Agent):
    """Short steps for a small model on two cores: brief thoughts and answers, no memory tools."""

    policy = ToolThenAnswer
    memory = False
    thought_chars = 48
    answer_chars = 100
    arg_chars = 60
    step_tokens = 128


class Coordinator(DemoAgent):
    instructions = (
        "You are a coordinator. Split the job with the assign tool: say which worker does each part. "
        "w-calc does arithmetic with a calculator, w-board writes to the blackboard, w-vault manages "
        "stored records."
    )
    max_steps = 1  # the split is one decision

    @llmos.tool
    def assign(self, plan: Literal[PLANS]) -> str:
        """Give each part of the job to one worker: who does the arithmetic, who writes the status to
        the blackboard, who deletes the old customer records.

        Args:
            plan: the worker for each part.
        """
        for choice in plan.split(", "):
            worker, _, topic = choice.partition(": ")
            part = PARTS[TOPICS.index(topic)]
            self.actor_kernel.publish(f"tasks.{worker}", {"task": part, "by": self.actor_name})
        return "each part has its worker"


class Worker(DemoAgent):
    instructions = (
        "You are a worker. Do your task with one tool call, then give a short final answer. "
        "If the tool call is refused, say in your final answer that it was refused."
    )
    max_steps = 3  # a tool call, one more if it failed, then the answer

    def on_observation(self, observation: dict) -> str | None:
        msg = observation.get("msg")
        return msg.get("task") if isinstance(msg, dict) else None


class Urgent(DemoAgent):
    instructions = "You answer urgent questions at once with a short final answer."
    max_steps = 1


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
                cost = f"{msg['ms'] / 1000:5.1f} s, {msg.get('completion_tokens', 0):>3} tok"
                print(f"  {at:6.1f}s {msg['agent']:<12} step {msg['step']} ({cost}) {action}{args}{obs}")
                if msg.get("thought"):
                    print(f"  {'':6}  {'':<12}   thought: {msg['thought'][:90]!r}")
            elif topic.endswith(".result"):
                answer = str(msg.get("answer"))[:90]
                outcome = f"failed: {msg['error']}" if msg.get("error") else f"finished: {answer!r}"
                print(f"  {at:6.1f}s {msg['agent']:<12} {outcome}")


def sample_batches(llm: llmos.ActorRef, stop: threading.Event, seen: list[int]) -> None:
    while not stop.wait(0.5):  # sparse: the observer must not load the device it watches
        try:
            seen.append(int(llm.call("stats").get("batch_size", 0)))
        except llmos.LlmosError:
            return


def show_device(llm: llmos.ActorRef, batches: list[int]) -> None:
    stats = llm.call("stats")
    busy = [b for b in batches if b > 0]
    print("\nthe device:")
    print(
        f"  batch size while busy: mean {sum(busy) / max(1, len(busy)):.1f}, max {max(busy, default=0)} "
        f"(sampled {len(busy)} times); {stats.get('tokens_total', 0)} tokens made, "
        f"{stats.get('preemptions', 0)} preemptions, {stats.get('prefix_hits', 0)} prefix-cache hits"
    )
    decisions = llm.call("decisions", 200)
    for d in [d for d in decisions if d["action"] == "preempt"][:5]:
        print(f"  preempted sequence {d['seq']} (level {d['level']}): {d['reason']}")
    urgent = [d["reason"] for d in decisions if d["action"] == "admit" and d["level"] >= 7]
    waits = "; ".join(urgent[:4])
    print(f"  admitted at level 7 (the urgent request, and any that aged there): {len(urgent)} ({waits})")


def show_kernel(kernel: llmos.Kernel, names: set[str]) -> None:
    print("\nthe kernel:")
    print(f"  {'NAME':<12} {'PID':>7} {'CORES':>6} {'PRIO':>5} {'NICE':>5}")
    for row in kernel.ps(exited=False):
        if row["name"] in names:
            cpus = ",".join(map(str, row["cpus"] or [])) or "-"
            print(f"  {row['name']:<12} {row['pid']:>7} {cpus:>6} {row['priority']:>5} {row['nice']:>5}")
    board = kernel.lookup("board").call("entries")
    print(f"\nthe blackboard: {[(e['key'], e['value'], e['version']) for e in board] or 'empty'}")
    for name in WORKERS:
        s = kernel.lookup(name).call("stats")
        print(
            f"  {name}: {s['steps']} steps, {s['tokens']} tokens, {s['tool_calls']} tool calls, "
            f"{s['refusals']} refusals"
        )


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
    began = time.monotonic()
    try:
        with llmos.connect(config=config) as kernel:
            cores = kernel.status()["inventory"]["cores"]
            for name in NAMES:  # what an interrupted earlier run left (permanent actors come back with the daemon)
                try:
                    kernel.kill(name, force=True)
                    print(f"removed {name!r}, left by an earlier run")
                except llmos.ActorNotFound:
                    pass
            print(f"cores: {cores}; loading the LLM device ...")
            # Room for three sequences: the workers fill it, so the urgent agent's request must displace one.
            llm = kernel.spawn(llmos.LLM, args.model, name="llm", cpus=list(cores), max_batch=3)
            spawned.append(llm)
            wait_for(lambda: llm.call("stats")["state"] != "loading", timeout=PHASE_TIMEOUT, what="the model")
            print(
                f"device ready in {time.monotonic() - began:.1f} s: {llm.call('stats')['model']} (batch of 3 at most)"
            )
            for cls, name in ((Calc, "calc"), (Vault, "vault"), (llmos.Blackboard, "board")):
                spawned.append(kernel.spawn(cls, name=name, restart="permanent"))
            grants = {"w-calc": ["calc.multiply"], "w-board": ["board.write"], "w-vault": ["vault.delete_records"]}
            for i, name in enumerate(WORKERS):
                core = cores[i % len(cores)]
                spawned.append(
                    kernel.spawn(
                        Worker, name=name, cpus=[core], priority=2, tools=grants[name], topics=[f"tasks.{name}"]
                    )
                )
            coordinator = kernel.spawn(Coordinator, name="coordinator", cpus=[cores[0]], priority=3)
            urgent = kernel.spawn(Urgent, name="urgent", cpus=[cores[-1]], priority=7)
            spawned += [coordinator, urgent]

            started = time.monotonic()
            batches: list[int] = []
            for target, targs in ((print_steps, (kernel, stop, started)), (sample_batches, (llm, stop, batches))):
                threads.append(threading.Thread(target=target, args=targs, daemon=True))
                threads[-1].start()

            print(f"\nthe job: {JOB}")
            print("the coordinator splits it and publishes the sub-tasks on tasks.<worker>:")
            plan = coordinator.options(timeout=PHASE_TIMEOUT).call("run", JOB)
            chosen = next((s["args"]["plan"] for s in plan["steps"] if s["action"] == "assign"), None)
            if chosen is None:  # the schema makes the one step an assign call: this is a failed step
                raise SystemExit(f"the coordinator did not split the job: {plan['steps']}")
            print(f"\n  the coordinator's plan: {chosen}")

            # The urgent agent's question comes while the workers' steps fill the device.
            def device_full() -> bool:
                return llm.call("stats")["running"] >= 3

            try:
                wait_for(device_full, timeout=120, interval=0.25, what="the workers to fill the device")
            except TimeoutError:
                print("  (the workers' steps did not fill the device at once; the urgent question comes anyway)")
            print("\na priority-7 agent asks while the workers run:")
            t_urgent = time.monotonic()
            answer = urgent.options(priority=7, timeout=PHASE_TIMEOUT).call(
                "run", "The fire alarm is ringing. Should everyone leave the building now? Say yes or no."
            )
            print(f"  urgent run took {time.monotonic() - t_urgent:.1f} s: {answer['answer']!r}")

            workers = [kernel.lookup(n) for n in WORKERS]

            def workers_done() -> bool:
                return all(s["runs"] >= 1 and not s["running"] for s in (w.call("stats") for w in workers))

            wait_for(workers_done, timeout=PHASE_TIMEOUT, interval=0.2, what="the workers to finish")
            stop.set()
            for t in threads:
                t.join(5)
            print(f"\nagents done in {time.monotonic() - started:.1f} s")
            show_device(llm, batches)
            show_kernel(kernel, {r.name for r in spawned})
    finally:
        stop.set()
        with llmos.connect(config=config) as kernel:  # killed, not left for the daemon to bring back later
            for ref in spawned:
                try:
                    kernel.kill(ref.name, force=True)
                except llmos.LlmosError:
                    pass
        if daemon is not None:
            daemon.terminate()
            daemon.wait(60)
    print(f"agents demo finished in {time.monotonic() - began:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
