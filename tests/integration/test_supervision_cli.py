"""``llmos ps --tree``, the sync and supervision lines of ``llmos status``, ``kill --cancel`` (issue 5)."""

from __future__ import annotations

import json

from supervision_actors import LockUser, Worker


def test_ps_tree(cli, kernel):
    with kernel.supervisor(name="tree-top", strategy="one_for_all") as top:
        top.spawn(Worker, name="tree-a")
        child = top.supervisor(name="tree-child", strategy="rest_for_one")
        child.spawn(Worker, name="tree-b")
        kernel.spawn(Worker, name="tree-alone")
        code, out, _ = cli("ps", "--tree", "--live")
        assert code == 0
        lines = out.splitlines()
        text = "\n".join(lines)
        assert lines[0].split()[0] == "TREE"
        top_line = next(i for i, line in enumerate(lines) if "[tree-top]" in line)
        assert "one_for_all" in lines[top_line]
        assert lines[top_line + 1].startswith("├─ tree-a")
        assert lines[top_line + 2].startswith("└─ [tree-child]") and "rest_for_one" in lines[top_line + 2]
        assert lines[top_line + 3].startswith("   └─ tree-b")
        assert "tree-alone" in text
        code, out, _ = cli("ps", "--tree", "--json")
        tree = json.loads(out)
        node = next(n for n in tree if n.get("name") == "tree-top")
        assert [c["name"] for c in node["children"]] == ["tree-a", "tree-child"]
        assert node["children"][1]["children"][0]["name"] == "tree-b"


def test_status_shows_sync_objects_and_restarts(cli, kernel):
    user = kernel.spawn(LockUser)
    assert user.call("grab", "status-m")
    waiting = kernel.mutex("status-m")
    assert waiting.acquire(timeout=0.01) is False
    code, out, _ = cli("status")
    assert code == 0
    assert "supervision" in out and "sync" in out
    assert "mutex 'status-m': held by pid" in out


def test_kill_cancel_flag(cli, kernel):
    kernel.spawn(Worker, name="cli-cancel")
    code, out, _ = cli("kill", "cli-cancel", "--cancel", "--grace", "2")
    assert code == 0 and "stopped by request" in out
