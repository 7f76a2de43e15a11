"""Running as a system service: the systemd unit, READY=1 over $NOTIFY_SOCKET, the default config."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from llmos_actors.config import load_config
from llmos_actors.testing import short_tmpdir, start_daemon

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_unit_file_verifies(tmp_path):
    unit = (ROOT / "daemon" / "llmosd.service").read_text()
    llmos = Path(sys.executable).with_name("llmos")
    unit = unit.replace("/usr/local/bin/llmos", str(llmos)).replace(
        "/etc/llmos/llmosd.toml", str(ROOT / "daemon/llmosd.toml")
    )
    path = tmp_path / "llmosd.service"
    path.write_text(unit)
    out = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "llmosd.service" not in out.stderr, out.stderr  # no warnings about our unit


def test_unit_is_type_notify_with_runtime_directory():
    unit = (ROOT / "daemon" / "llmosd.service").read_text()
    for line in ("Type=notify", "RuntimeDirectory=llmos", "RuntimeDirectoryMode=0700", "Restart=on-failure"):
        assert line in unit


def test_default_config_file_loads():
    config = load_config(config_file=ROOT / "daemon" / "llmosd.toml", env={})
    assert config.grace == 5.0 and config.overflow == "block" and config.preload == ("numpy", "torch")


def test_daemon_notifies_systemd_ready():
    base = short_tmpdir()
    path = base / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(30)
    try:
        with start_daemon(env={"NOTIFY_SOCKET": str(path)}) as d:
            message = sock.recv(4096).decode()
            assert "READY=1" in message and f"MAINPID={d.pid}" in message
            d.stop()
            assert "STOPPING=1" in sock.recv(4096).decode()
    finally:
        sock.close()
        shutil.rmtree(base, ignore_errors=True)


def test_runtime_dir_is_private(daemon):
    assert daemon.runtime_dir.stat().st_mode & 0o777 == 0o700
