"""The public face: exports, spawn request validation, class naming."""

from __future__ import annotations

from pathlib import Path

import pytest

import llmos_actors as llmos
from llmos_actors import _spawnspec
from llmos_actors._wire.codec import Codec
from llmos_actors.errors import ActorImportError


def test_all_matches_exports():
    public = {n for n in dir(llmos) if n[0].isalpha() and n not in {"annotations", "logging"}}
    submodules = {
        "actor",
        "client",
        "config",
        "errors",
        "refs",
        "testing",
        "cli",
        "streams",
        "topics",
        "supervision",
        "sync",
        "pages",
        "pools",
        "pool_dispatcher",
        "scheduling",
        "bench",
        "agents",
        "llm",
        "keys",
        "snapshots",
        "cluster",
    }
    assert set(llmos.__all__) - {"__version__"} == public - submodules
    for name in llmos.__all__:
        assert hasattr(llmos, name)


def test_error_tree():
    for name in llmos.__all__:
        obj = getattr(llmos, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, llmos.LlmosError)
    assert issubclass(llmos.CallTimeout, TimeoutError)
    assert issubclass(llmos.DaemonUnavailable, ConnectionError)


class TopLevel(llmos.Actor):
    pass


def test_describe_class():
    path, hints, main = _spawnspec.describe_class(TopLevel)
    assert path == f"{__name__}:TopLevel" and main is None and hints
    # The caller's own source dirs follow (the tests dir conftest put on sys.path, for one), so a
    # module imported as part of a package still finds the neighbours it imports by plain name.
    tests_dir = str(Path(__file__).resolve().parent.parent)
    assert tests_dir in hints[1:]

    class Local(llmos.Actor):
        pass

    with pytest.raises(ActorImportError, match="inside a function"):
        _spawnspec.describe_class(Local)
    with pytest.raises(ActorImportError, match="module:Class"):
        _spawnspec.describe_class("no-colon")
    with pytest.raises(TypeError):
        _spawnspec.describe_class(42)


@pytest.mark.parametrize(
    "options, error",
    [
        ({"priority": 9}, ValueError),
        ({"priority": "high"}, ValueError),
        ({"cpus": []}, ValueError),
        ({"cpus": True}, TypeError),
        ({"cpus": 0}, ValueError),
        ({"name": ""}, ValueError),
        ({"restart": "always"}, ValueError),
        ({"overflow": "spill"}, ValueError),
        ({"mailbox_size": 0}, ValueError),
        ({"env": {"A": 1}}, TypeError),
        ({"colour": "red"}, TypeError),
    ],
)
def test_spawn_request_validation(options, error):
    with pytest.raises(error):
        _spawnspec.build_spawn_request(Codec(), TopLevel, (), {}, options)


def test_spawn_request_packs_arguments():
    req = _spawnspec.build_spawn_request(Codec(), "m:C", (1, "x"), {"k": 2}, {"cpus": {1, 0}, "name": "n"})
    assert req["cpus"] == [0, 1] and req["name"] == "n"
    assert Codec().unpack(req["args"]) == [[1, "x"], {"k": 2}]


def test_call_options():
    opts = llmos.CallOptions().merge(timeout=1.5, priority=7)
    assert opts.timeout == 1.5 and opts.priority == 7
    with pytest.raises(ValueError):
        llmos.CallOptions().merge(timeout=0)
    with pytest.raises(TypeError, match="unknown call options"):
        llmos.CallOptions().merge(retries=3)
