"""The ``llmos`` command line against a real daemon."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

from llmos_actors.cli.__main__ import main


def test_spawn_call_tell_ps_kill(cli, kernel):
    code, out, _ = cli("spawn", "actors:Counter", "--name", "cli-c", "--cpus", "0", "--args", "[10]", "--json")
    assert code == 0
    row = json.loads(out)
    assert row["name"] == "cli-c" and row["cpus"] == [0] and row["pid"] > 0
    assert cli("call", "cli-c", "incr", "5") == (0, "15\n", "")
    assert cli("tell", "cli-c", "incr", "1")[0] == 0
    assert cli("call", "cli-c", "echo", '{"a": [1, 2]}')[1] == '{"a": [1, 2]}\n'
    assert cli("call", "cli-c", "echo_kwargs", "1", "--kwargs", '{"x": "y"}')[1] == '[[1], {"x": "y"}]\n'
    code, out, _ = cli("ps", "--json")
    rows = {r["name"]: r for r in json.loads(out)}
    assert rows["cli-c"]["state"] == "running"
    code, out, _ = cli("ps")
    assert "cli-c" in out and "running" in out and out.splitlines()[0].split()[:4] == ["NAME", "ID", "PID", "STATE"]
    code, out, _ = cli("kill", "cli-c", "--json")
    assert code == 0 and json.loads(out)["exitcode"] == 0
    assert "exited" in cli("ps")[1]
    assert cli("ps", "--live", "--json")[1].count("cli-c") == 0


def test_status(cli):
    code, out, _ = cli("status", "--json")
    info = json.loads(out)
    assert code == 0 and info["inventory"]["cores"]
    code, out, _ = cli("status")
    assert "llmos daemon" in out and "cores" in out


def test_errors_have_exit_codes(cli, kernel):
    code, _, err = cli("call", "nobody", "x")
    assert code == 3 and "no actor named 'nobody'" in err
    cli("spawn", "actors:Probe", "--name", "cli-p")
    code, _, err = cli("call", "cli-p", "raise_value_error", '"boom"')
    assert code == 1 and "ValueError: boom" in err
    code, _, err = cli("spawn", "nope_module:X")
    assert code == 1 and "ActorImportError" in err
    assert main(["--runtime-dir", "/tmp/definitely-not-a-daemon-here", "ps"]) == 4


def test_logs(cli, kernel):
    cli("spawn", "actors:Probe", "--name", "cli-logs")
    cli("call", "cli-logs", "say", '"via cli"')
    from llmos_actors.testing import wait_for

    wait_for(lambda: "via cli" in cli("logs", "cli-logs", "-n", "5")[1], 10)


def test_console_script_and_env_var(daemon, kernel):
    exe = shutil.which("llmos") or os.path.join(os.path.dirname(sys.executable), "llmos")
    env = dict(os.environ, LLMOS_RUNTIME_DIR=str(daemon.runtime_dir))
    out = subprocess.run([exe, "ps", "--json"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert isinstance(json.loads(out.stdout), list)
    out = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60)
    for command in ("daemon", "status", "ps", "spawn", "call", "tell", "kill", "logs"):
        assert command in out.stdout
