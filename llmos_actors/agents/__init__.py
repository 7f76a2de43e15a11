"""Agents on the kernel: perceive, decide (one constrained LLM request per step), act through tools
under permissions, collaborate, and remember (see docs/agents.md)."""

from __future__ import annotations

from .agent import Agent
from .blackboard import Blackboard
from .decision import Decision, DecisionError, decision_schema
from .permissions import answer_approval
from .policy import DecisionRequest, LLMPolicy, Policy, Proposal, ScriptedPolicy
from .tools import ToolSpec, tool

__all__ = [
    "Agent",
    "Blackboard",
    "Decision",
    "DecisionError",
    "DecisionRequest",
    "LLMPolicy",
    "Policy",
    "Proposal",
    "ScriptedPolicy",
    "ToolSpec",
    "answer_approval",
    "decision_schema",
    "tool",
]
