"""Importing an actor class by name inside the freshly forked actor (never by pickle)."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import traceback

from ..errors import ActorImportError

MAIN_ALIAS = "__llmos_main__"


def load_class(cls_path: str, path_hints: list[str] | None = None, main_file: str | None = None) -> type:
    """Import ``module:qualname`` and return the class.

    A class from a client's ``__main__`` is imported from its script file under
    the name ``__llmos_main__``, so the script's ``if __name__ == "__main__":``
    block does not run again.

    Raises:
        ActorImportError: with the import error's type, message and traceback text.
    """
    module_name, sep, qualname = cls_path.partition(":")
    if not sep or not module_name or not qualname:
        raise ActorImportError(f"actor class must be named 'module:Class', not {cls_path!r}")
    # The first hint is where the caller found the class (or its cwd): it wins. The rest
    # (the caller's own source dirs) only fill in what the daemon's path lacks.
    hints = list(path_hints or [])
    if hints and hints[0] not in sys.path:
        sys.path.insert(0, hints[0])
    for hint in hints[1:]:
        if hint not in sys.path:
            sys.path.append(hint)
    try:
        if module_name == "__main__":
            if not main_file:
                raise ImportError("the class lives in a __main__ module without a file")
            module = sys.modules.get(MAIN_ALIAS)
            if module is None:
                spec = importlib.util.spec_from_file_location(MAIN_ALIAS, main_file)
                if spec is None or spec.loader is None:
                    raise ImportError(f"cannot load {main_file}")
                module = importlib.util.module_from_spec(spec)
                sys.modules[MAIN_ALIAS] = module
                spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
        obj: object = module
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except Exception as exc:
        err = ActorImportError(f"cannot import actor class {cls_path!r}: {type(exc).__name__}: {exc}")
        err.remote_traceback = "".join(traceback.format_exception(exc))
        raise err from exc
    if not isinstance(obj, type):
        raise ActorImportError(f"{cls_path!r} is a {type(obj).__name__}, not a class")
    return obj
