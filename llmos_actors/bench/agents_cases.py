"""Agents' benchmark cases (``llmos bench --llm``), registered into the common tables like the LLM device's.

- ``agents_steps_per_s_8``: 8 agents each run a 5-step tool task at once, against the same 8 runs
  one after another through the same device (one LLM request at a time, as agent frameworks do).
- ``agents_priority_completion``: a priority-7 agent's run time while 7 priority-0 agents work,
  against the same run on an idle device.

Each step is a tool call by construction (the decision schema offers no final answer before the
last step), so every run makes exactly its number of steps whatever the model writes. The task is
5 steps in ``--quick`` runs too (they take fewer samples): the model's decisions are the work, the
tool is a trivial addition, so the device is the bottleneck.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from ..actor import Actor
from ..agents import Agent, LLMPolicy, tool
from ..errors import LlmosError
from .cases import CASES
from .context import Actors, BenchContext
from .llm_workloads import ANSWER_TIMEOUT, spawn_device
from .model_cases import model_case, model_latency_case, needs_model
from .peers import PEERS, Peer
from .workload import Workload

PREFIX = "agents_"
#: Agents in the throughput case and in the priority case (one of them urgent).
N_AGENTS = 8
GOALS = ["Add 12 and 30.", "Add 7 and 8.", "Add 100 and 23.", "Add 5 and 5.", "Add 64 and 36.", "Add 2 and 9."]


class BenchCalc(Actor):
    @tool
    def add(self, a: int, b: int) -> int:
        """Add two whole numbers.

        Args:
            a: the first number.
            b: the second number.
        """
        return a + b


class ToolSteps(LLMPolicy):
    """The device decides, but may only finish at the last step: each run makes exactly ``max_steps`` steps."""

    async def decide(self, request: Any, kernel: Any) -> Any:
        if request.step < request.max_steps:
            request.restrict(final=False)
        return await super().decide(request, kernel)


class BenchAgent(Agent):
    instructions = "You add numbers with the add tool. Keep thoughts short."
    thought_chars = 60  # ~30 tokens a decision: the model's work, in bench time a 2-core machine affords
    memory = False
    publish_steps = False
    policy = ToolSteps


#: Steps of each run.
STEPS = 5


class _AgentsOnDevice(Workload):
    """A device, a calculator and ``n`` agents granted its ``add``."""

    warmup = False  # the device warmed up at spawn; a round costs seconds

    def __init__(self, ctx: BenchContext, n: int, priorities: list[int]) -> None:
        self.actors = Actors(ctx.kernel)
        self.steps = STEPS
        with self.actors.on_error_close():
            self.device = spawn_device(self.actors)
            calc = self.actors.spawn(BenchCalc, name=f"{self.device.name}-calc")
            self.agents = []
            for i in range(n):
                settings = {"llm": self.device.name, "tools": [f"{calc.name}.add"], "max_steps": self.steps}
                agent = ctx.kernel.spawn_with(
                    BenchAgent, (), settings, name=f"{self.device.name}-agent-{i}", priority=priorities[i]
                )
                self.actors.refs.append(agent)
                self.agents.append(agent)

    def run(self, agent: Any, i: int, priority: int) -> dict:
        return agent.options(priority=priority, timeout=ANSWER_TIMEOUT).call("run", GOALS[i % len(GOALS)])

    def close(self) -> None:
        self.actors.close()


class AgentSteps(_AgentsOnDevice):
    """8 agents' runs at once ("together") or one after another ("one_at_a_time"): steps per second."""

    def __init__(self, ctx: BenchContext, mode: str = "together") -> None:
        self.max_samples = 1 if ctx.quick else 3  # a one-at-a-time round is 40 decisions
        super().__init__(ctx, N_AGENTS, [0] * N_AGENTS)
        self.mode = mode
        self.ops = N_AGENTS * self.steps
        self.note = f"{N_AGENTS} agents x {self.steps} tool steps, {mode.replace('_', ' ')}, one device"

    def round(self) -> float:
        start = time.monotonic()
        if self.mode == "together":
            futures = [
                a.options(timeout=ANSWER_TIMEOUT).ask("run", GOALS[i % len(GOALS)]) for i, a in enumerate(self.agents)
            ]
            results = [f.result(ANSWER_TIMEOUT) for f in futures]
        else:
            results = [self.run(a, i, 0) for i, a in enumerate(self.agents)]
        elapsed = time.monotonic() - start
        self.ops = sum(len(r["steps"]) for r in results)
        return elapsed


class PriorityRun(_AgentsOnDevice):
    """One priority-7 agent's run, while 7 priority-0 agents run without pause ("loaded") or alone ("alone")."""

    def __init__(self, ctx: BenchContext, mode: str = "loaded") -> None:
        self.max_samples = 2 if ctx.quick else 5
        super().__init__(ctx, N_AGENTS, [7] + [0] * (N_AGENTS - 1))
        self.note = f"a {self.steps}-step run at priority 7" + (
            f", {N_AGENTS - 1} priority-0 agents running" if mode == "loaded" else ", idle device"
        )
        self.stop = threading.Event()
        self.load: list[threading.Thread] = []
        if mode == "loaded":
            for i, agent in enumerate(self.agents[1:], 1):
                thread = threading.Thread(target=self._keep_running, args=(agent, i), daemon=True)
                thread.start()
                self.load.append(thread)
            deadline = time.monotonic() + ANSWER_TIMEOUT
            while self.device.call("stats")["running"] < N_AGENTS - 1:
                if time.monotonic() > deadline:
                    self.close()
                    raise LlmosError("the priority-0 agents did not start")
                time.sleep(0.05)  # polling the device's batch until the load runs

    def _keep_running(self, agent: Any, i: int) -> None:
        while not self.stop.is_set():
            try:
                self.run(agent, i, 0)
            except LlmosError:
                return  # closed: its actor was killed

    def round(self) -> None:
        self.run(self.agents[0], 0, 7)

    def close(self) -> None:
        self.stop.set()
        super().close()  # kills the agents: the load's calls end
        for thread in self.load:
            thread.join(30)
        self.load = []


AGENT_CASES = [
    model_case(
        "agents_steps_per_s_8",
        "steps/s",
        "8 agents each run a 5-step tool task at once through one SmolLM2 device: decision steps per second",
        lambda ctx: AgentSteps(ctx, "together"),
        peers=("agents_one_at_a_time",),
    ),
    model_latency_case(
        "agents_priority_completion",
        "s",
        "a priority-7 agent's 5-step run while 7 priority-0 agents work: its run time",
        lambda ctx: PriorityRun(ctx, "loaded"),
        samples="rounds",
        peers=("agents_priority_alone",),
    ),
]

AGENT_PEERS = [
    Peer(
        "agents_one_at_a_time",
        "the same runs one after another",
        lambda ctx, **_: AgentSteps(ctx, "one_at_a_time"),
        needs_model,
    ),
    Peer("agents_priority_alone", "the same run alone", lambda ctx, **_: PriorityRun(ctx, "alone"), needs_model),
]

CASES.update((c.name, c) for c in AGENT_CASES)
PEERS.update((p.id, p) for p in AGENT_PEERS)
