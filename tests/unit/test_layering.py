"""Imports point one way: each layer imports only layers below it (see docs/architecture.md).

Read from the source with ``ast`` (nothing is imported). Imports under
``if TYPE_CHECKING:`` are type hints, not dependencies at run time, and are not
counted. A module this table does not name belongs to the client layer.
"""

from __future__ import annotations

import ast
from pathlib import Path

import llmos_actors

PACKAGE = Path(llmos_actors.__file__).parent

#: Layers from the bottom up; a group (a subpackage or a top-level module) may import its own
#: layer's groups and the layers below.
LAYERS: list[tuple[str, set[str]]] = [
    ("base", {"errors", "_version", "_clock", "_validate", "config", "scheduling"}),
    ("wire", {"_wire"}),
    ("pages mechanics", {"_pages"}),
    ("rpc", {"_rpc", "_ops"}),
    ("client", set()),  # everything not named elsewhere: the public client modules
    ("actor runtime", {"_runtime"}),
    ("daemon", {"_kernel"}),
    ("tools", {"cli", "bench", "bench_support", "testing", "__init__", "__main__"}),
]

#: Upward imports let through, as (importer, imported). Adding one here needs a reason.
ALLOWED: set[tuple[str, str]] = set()


def _rank(group: str) -> int:
    for rank, (_, groups) in enumerate(LAYERS):
        if group in groups:
            return rank
    return next(rank for rank, (name, _) in enumerate(LAYERS) if name == "client")


def _group(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _exists(module: str) -> bool:
    path = PACKAGE.parent.joinpath(*module.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def _type_checking_only(tree: ast.Module) -> set[int]:
    """Line numbers of imports inside ``if TYPE_CHECKING:`` blocks."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for inner in node.body:
                for sub in ast.walk(inner):
                    if isinstance(sub, (ast.Import, ast.ImportFrom)):
                        lines.add(sub.lineno)
    return lines


def imports() -> dict[str, set[str]]:
    """Module -> the llmos_actors modules it imports at run time."""
    out: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        module = ".".join(rel.parts)
        package = module.rsplit(".", 1)[0]
        if path.name == "__init__.py":
            module = package
        tree = ast.parse(path.read_text(), str(path))
        hints = _type_checking_only(tree)
        found: set[str] = set()
        for node in ast.walk(tree):
            if getattr(node, "lineno", None) in hints:
                continue
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith("llmos_actors"))
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                if not target.startswith("llmos_actors"):
                    continue
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    found.add(sub if _exists(sub) else target)  # a name from a module, or a module
        out[module] = found - {module}
    return out


def test_no_upward_imports():
    upward = []
    for module, targets in imports().items():
        for target in targets:
            if _rank(_group(target)) > _rank(_group(module)) and (module, target) not in ALLOWED:
                upward.append(f"{module} imports {target}")
    assert not upward, "imports that point upward (see docs/architecture.md):\n" + "\n".join(sorted(upward))


def test_no_cycles_between_groups():
    graph: dict[str, set[str]] = {}
    for module, targets in imports().items():
        for target in targets:
            if (module, target) not in ALLOWED and _group(module) != _group(target):
                graph.setdefault(_group(module), set()).add(_group(target))
    cycles = []
    for start in graph:
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for nxt in graph.get(node, ()):
                if nxt == start:
                    cycles.append(" -> ".join([*path, start]))
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*path, nxt]))
    assert not cycles, "import cycles between groups:\n" + "\n".join(sorted(set(cycles)))


def test_every_private_subpackage_has_a_layer():
    """A new private subpackage must be placed in ``LAYERS`` (it would default to the client layer)."""
    named = set().union(*(groups for _, groups in LAYERS))
    private = {p.name for p in PACKAGE.iterdir() if p.name.startswith("_") and (p / "__init__.py").exists()}
    assert not private - named, f"place these in LAYERS: {sorted(private - named)}"


#: Longest a module outside ``bench/`` may be (docs/architecture.md, "Module size": split at ~380).
MAX_MODULE_LINES = 400


def test_no_module_is_too_long():
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if "bench" in path.relative_to(PACKAGE).parts[:1]:
            continue
        lines = len(path.read_text().splitlines())
        if lines > MAX_MODULE_LINES:
            long.append(f"{path.relative_to(PACKAGE.parent)}: {lines} lines")
    assert not long, "split these along a seam (see docs/architecture.md, Module size):\n" + "\n".join(long)
