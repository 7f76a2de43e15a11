"""Approvals answered by a human: only the agent's owner counts, whoever else can publish.

One daemon that also listens on TCP, so a second identity exists: the test's own
connection is the owner (``uid:<n>``); ``alice`` (``key:alice``, role user) is a stranger.
"""

from __future__ import annotations

import os
import shutil

import pytest

import llmos_actors as llmos
from llmos_actors.agents import answer_approval
from llmos_actors.keys import generate_keypair
from llmos_actors.testing import free_tcp_ports, short_tmpdir, start_daemon, wait_for


class Vault(llmos.Actor):
    def __init__(self) -> None:
        self.wiped: list[str] = []

    @llmos.tool(confirm=True)
    def wipe(self, what: str) -> str:
        """Delete everything named ``what`` (irreversible)."""
        self.wiped.append(what)
        return f"wiped {what}"

    def history(self) -> list:
        return self.wiped


class Keeper(llmos.Agent):
    tools = ["vault.wipe"]
    approver = "topic"
    approval_timeout = 120.0
    script = [{"thought": "wipe it", "tool": "vault.wipe", "args": {"what": "tmp"}}, {"thought": "ok", "final": "ok"}]


@pytest.fixture(scope="module")
def tcp_daemon():
    base = short_tmpdir("llmos-appr-")
    authorized = base / "authorized"
    authorized.mkdir(mode=0o700)
    alice_secret, alice_public = generate_keypair("alice", base / "client")
    shutil.copy(alice_public, authorized / "alice.pub")
    port = free_tcp_ports(3)
    try:
        with start_daemon(
            grace=2.0,
            network={
                "listen": [f"tcp://127.0.0.1:{port}"],
                "authorized_keys": str(authorized),
                "server_key": str(base / "server.key"),
            },
        ) as handle:
            handle.url = f"tcp://127.0.0.1:{port}"
            handle.alice = (str(alice_secret), str(base / "server.pub"))
            yield handle
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _events(sub, kind: str, found: list) -> bool:
    try:
        _topic, body = sub.get(timeout=1)
    except llmos.CallTimeout:
        return False
    event = body.get("event") or {}
    if event.get("kind") == kind:
        found.append((body, event))
    return bool(found)


def test_only_the_owner_answers_an_approval(tcp_daemon):
    owner = tcp_daemon.connect()
    requests = owner.subscribe("approvals.request.")
    audit = owner.subscribe("sys.audit")
    try:
        vault = owner.spawn(Vault, name="vault")
        agent = owner.spawn(Keeper, name="keeper")
        run = agent.options(timeout=180).ask("run", "wipe tmp")
        _topic, request = requests.get(timeout=60)
        assert request["tool"] == "vault.wipe" and request["owner"] == f"uid:{os.geteuid()}"

        # A stranger answers yes: the daemon names it key:alice, so the agent ignores the answer, and says so.
        secret, server_pub = tcp_daemon.alice
        with llmos.connect(tcp_daemon.url, key=secret, server_key=server_pub) as alice:
            answer_approval(alice, request, True, "let me")
        ignored: list = []
        wait_for(lambda: _events(audit, "agent.approval_ignored", ignored), timeout=60, what="the refusal audit")
        body, event = ignored[0]
        assert event["agent"] == "keeper" and event["from"] == "key:alice" and event["id"] == request["id"]
        assert body["by"].startswith(f"uid:{os.geteuid()}")  # reported by the agent's process, not claimed by alice
        assert not run.done() and vault.call("history") == []

        # The owner's answer is taken.
        answer_approval(owner, request, True, "fine by me")
        result = run.result(120)
        assert result["steps"][0]["observation"] == "wiped tmp"
        assert vault.call("history") == ["tmp"]
    finally:
        requests.close()
        audit.close()
        for name in ("keeper", "vault"):
            try:
                owner.kill(name, force=True)
            except llmos.ActorNotFound:
                pass


def test_the_owner_can_say_no(tcp_daemon):
    owner = tcp_daemon.connect()
    requests = owner.subscribe("approvals.request.")
    try:
        vault = owner.spawn(Vault, name="vault-2")
        agent = owner.spawn(
            Keeper,
            name="keeper-2",
            tools=["vault-2.wipe"],
            script=[
                {"thought": "wipe it", "tool": "vault-2.wipe", "args": {"what": "logs"}},
                {"thought": "ok", "final": "not allowed"},
            ],
        )
        run = agent.options(timeout=180).ask("run", "wipe logs")
        _topic, request = requests.get(timeout=60)
        answer_approval(owner, request, False, "not today")
        observation = run.result(120)["steps"][0]["observation"]
        assert observation == "refused: not today"
        assert vault.call("history") == []
    finally:
        requests.close()
        for name in ("keeper-2", "vault-2"):
            try:
                owner.kill(name, force=True)
            except llmos.ActorNotFound:
                pass
