"""The runtime directory: no predictable fallback, no symlinks, no strangers' directories."""

from __future__ import annotations

import os

import pytest

import llmos_actors as llmos
from llmos_actors._connecting import check_runtime_dir
from llmos_actors._kernel.rundir import prepare_runtime_dir
from llmos_actors.config import default_runtime_dir
from llmos_actors.testing import short_tmpdir


@pytest.fixture
def base():
    path = short_tmpdir("llmos-rd-")
    yield path
    for root, dirs, files in os.walk(path, topdown=False):
        for name in files + dirs:
            full = os.path.join(root, name)
            if os.path.islink(full) or not os.path.isdir(full):
                os.unlink(full)
            else:
                os.rmdir(full)
    os.rmdir(path)


def test_no_tmp_fallback_without_xdg(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(llmos.ConfigError, match="no /tmp fallback"):
        default_runtime_dir({})
    assert str(default_runtime_dir({"XDG_RUNTIME_DIR": "/run/user/1000"})) == "/run/user/1000/llmos"


def test_daemon_refuses_a_symlinked_runtime_dir(base):
    real = base / "real"
    real.mkdir(mode=0o700)
    link = base / "link"
    link.symlink_to(real)
    with pytest.raises(llmos.ConfigError, match="symlink"):
        prepare_runtime_dir(link)


def test_daemon_makes_it_private(base):
    rd = base / "rt"
    rd.mkdir(mode=0o755)
    os.chmod(rd, 0o755)
    prepare_runtime_dir(rd)
    assert rd.stat().st_mode & 0o777 == 0o700
    assert (rd / "a").stat().st_mode & 0o777 == 0o700


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_daemon_refuses_another_users_dir(base):
    rd = base / "squatted"
    rd.mkdir(mode=0o700)
    os.chown(rd, 65534, 65534)
    with pytest.raises(llmos.ConfigError, match="belongs to uid 65534"):
        prepare_runtime_dir(rd)


def test_client_refuses_a_squatted_or_open_dir(base):
    link = base / "link"
    link.symlink_to(base)
    with pytest.raises(llmos.ConfigError, match="symlink"):
        check_runtime_dir(link)
    open_dir = base / "open"
    open_dir.mkdir()
    os.chmod(open_dir, 0o777)
    with pytest.raises(llmos.ConfigError, match="writable by others"):
        check_runtime_dir(open_dir)
    with pytest.raises(llmos.DaemonUnavailable):
        check_runtime_dir(base / "missing")
    if os.geteuid() == 0:
        # Made by another user in a directory others can write (like /tmp): not trusted.
        parent = base / "shared"
        parent.mkdir()
        os.chmod(parent, 0o1777)
        squatted = parent / "llmos"
        squatted.mkdir(mode=0o700)
        os.chown(squatted, 65534, 65534)
        with pytest.raises(llmos.ConfigError, match="belongs to uid 65534"):
            check_runtime_dir(squatted)


def test_connect_refuses_before_sending(base):
    open_dir = base / "open2"
    open_dir.mkdir()
    os.chmod(open_dir, 0o777)
    (open_dir / "control").touch()
    with pytest.raises(llmos.ConfigError, match="writable by others"):
        llmos.connect(open_dir).status()
