"""The tree shows the pipeline: each package imports only the layers below it, and no module
imports itself back through a cycle.  docs/architecture.md draws the same layers."""

from __future__ import annotations

import ast
from pathlib import Path

EDGE = Path(__file__).resolve().parent.parent / "edge"

#: Lowest first.  A module may import its own layer and the layers before it, never after.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("edge.errors", "edge.lifecycle", "edge.files", "edge.optional", "edge.labels", "edge.decision",
     "edge.interfaces", "edge.config", "edge.paths"),
    ("edge.sources",),
    ("edge.features",),
    ("edge.models",),
    ("edge.vision",),
    ("edge.outputs",),
    ("edge.pipeline",),
    ("edge.testing", "edge.service"),
    ("edge.commands",),
    ("edge.cli", "edge.__main__", "edge"),
)


def _module_name(path: Path) -> str:
    parts = path.relative_to(EDGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> int:
    for i, members in enumerate(LAYERS):
        if any(module == m or module.startswith(m + ".") for m in members if m != "edge"):
            return i
    if module == "edge":
        return len(LAYERS) - 1
    raise AssertionError(f"{module} is in no layer; add it to LAYERS and docs/architecture.md")


def _imports(path: Path) -> set[str]:
    """Every edge module ``path`` imports, at the top or inside a function (type-checking-only
    imports included: a reader follows them too)."""
    me = _module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == "edge" or target.startswith("edge."):
                names = [f"{target}.{a.name}" for a in node.names]
                out |= {n for n in names if _is_module(n)} or {target}
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("edge")}
    return out


def _is_module(name: str) -> bool:
    rel = Path(*name.split(".")[1:])
    return (EDGE / rel).with_suffix(".py").is_file() or (EDGE / rel / "__init__.py").is_file()


def _graph() -> dict[str, set[str]]:
    return {_module_name(p): _imports(p) for p in EDGE.rglob("*.py")}


def test_no_module_imports_a_later_layer():
    wrong = sorted(
        f"{mod} (layer {_layer(mod)}) imports {dep} (layer {_layer(dep)})"
        for mod, deps in _graph().items() for dep in deps
        if _layer(dep) > _layer(mod)
    )
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles():
    graph = _graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            if dep == node or dep not in graph:
                continue
            if state.get(dep) == 1:
                cycles.append(" -> ".join(stack[stack.index(dep):] + [dep]))
            elif dep not in state:
                visit(dep, stack + [dep])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "\n".join(cycles)


def test_every_module_is_in_a_layer():
    for mod in _graph():
        _layer(mod)
