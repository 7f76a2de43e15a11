"""Configuration: precedence, validation, directories."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmos_actors.config import Config, default_runtime_dir, instance_name, load_config
from llmos_actors.errors import ConfigError


def test_precedence_flags_env_file(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('[daemon]\ngrace = 2.5\nruntime_dir = "/tmp/from-file"\nmailbox_size = 7\n')
    cfg = load_config(config_file=f, env={})
    assert cfg.grace == 2.5 and cfg.runtime_dir == Path("/tmp/from-file") and cfg.mailbox_size == 7
    cfg = load_config(config_file=f, env={"LLMOS_RUNTIME_DIR": "/tmp/from-env"})
    assert cfg.runtime_dir == Path("/tmp/from-env")
    cfg = load_config({"runtime_dir": "/tmp/from-flag", "grace": 9}, config_file=f, env={"LLMOS_RUNTIME_DIR": "/x"})
    assert cfg.runtime_dir == Path("/tmp/from-flag") and cfg.grace == 9.0


def test_default_dirs():
    assert default_runtime_dir({"XDG_RUNTIME_DIR": "/run/user/5"}) == Path("/run/user/5/llmos")
    assert default_runtime_dir({"LLMOS_RUNTIME_DIR": "/a", "XDG_RUNTIME_DIR": "/b"}) == Path("/a")
    cfg = load_config({"runtime_dir": "/tmp/x"}, env={"XDG_STATE_HOME": "/s"})
    assert cfg.state_dir == Path("/s/llmos") / instance_name(Path("/tmp/x"))
    assert load_config({"runtime_dir": "/run/llmos"}, env={}).state_dir == Path("/var/lib/llmos")


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"overflow": "explode"}, "overflow"),
        ({"grace": 0}, "grace"),
        ({"mailbox_size": 0}, "mailbox_size"),
        ({"gc_threshold": -1}, "gc_threshold"),
        ({"tcp": "tcp://0.0.0.0:1"}, "network\\] listen"),
        ({"runtime_dir": "/tmp/" + "x" * 120}, "too long"),
    ],
)
def test_invalid_settings(settings, message):
    with pytest.raises(ConfigError, match=message):
        load_config(settings, env={})


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(config_file=tmp_path / "missing.toml", env={})
    bad = tmp_path / "bad.toml"
    bad.write_text("grace = [")
    with pytest.raises(ConfigError):
        load_config(config_file=bad, env={})
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("graec = 1\n")
    with pytest.raises(ConfigError, match="unknown config keys: graec"):
        load_config(config_file=unknown, env={})
    typed = tmp_path / "typed.toml"
    typed.write_text('grace = "soon"\n')
    with pytest.raises(ConfigError, match="grace"):
        load_config(config_file=typed, env={})


def test_config_is_frozen():
    cfg = load_config({"runtime_dir": "/tmp/y"}, env={})
    assert isinstance(cfg, Config)
    with pytest.raises(AttributeError):
        cfg.grace = 1  # type: ignore[misc]
    assert cfg.actor_endpoint("a1") == "ipc:///tmp/y/a/a1"
