"""The jaxrev core's imports run one way: errors → data → models → inference → result → checks →
plots → compare (→ applications → CLI). No import cycle, no project import inside a function
outside the CLIs, and the core never imports an application."""

from __future__ import annotations

import ast
from pathlib import Path

import jaxrev

ROOT = Path(jaxrev.__file__).parent
APPS = {"funnel", "roas", "allocation", "market"}  # the ROAS application, not the core
# Which core modules each layer may not import (the layers above it).
ABOVE = {
    "jaxrev.errors": ["jaxrev.data", "jaxrev.models", "jaxrev.inference", "jaxrev.result"],
    "jaxrev.data": ["jaxrev.models", "jaxrev.inference", "jaxrev.result", "jaxrev.checks"],
    "jaxrev.models": ["jaxrev.inference", "jaxrev.result", "jaxrev.checks", "jaxrev.plots"],
    "jaxrev.result": ["jaxrev.inference", "jaxrev.checks", "jaxrev.plots", "jaxrev.compare"],
    "jaxrev.checks": ["jaxrev.plots", "jaxrev.compare", "jaxrev.batch"],
    "jaxrev.plots": ["jaxrev.compare", "jaxrev.batch"],
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_core(name: str) -> bool:
    return not (set(name.split(".")[1:2]) & APPS) and not name.startswith("jaxrev.datasets")


def imports(tree: ast.AST) -> list[tuple[str, ast.AST]]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(alias.name, node) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.append((node.module, node))
    return out


def core_modules() -> dict[str, ast.AST]:
    trees = {module_name(p): ast.parse(p.read_text()) for p in ROOT.rglob("*.py")}
    return {name: tree for name, tree in trees.items() if is_core(name) and name != "jaxrev"}


def test_no_function_level_project_imports_outside_the_cli():
    found = []
    for name, tree in core_modules().items():
        if name.endswith("cli"):
            continue
        for fn in ast.walk(tree):
            if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                found += [
                    f"{name}:{node.lineno} imports {target}"
                    for target, node in imports(fn)
                    if target.startswith(("jaxrev", "jaxssm"))
                ]
    assert not found, found


def test_no_cycle_and_the_layers_run_one_way():
    modules = core_modules()

    def resolve(target: str) -> str | None:
        while target and target not in modules:
            target = target.rpartition(".")[0]
        return target or None

    graph = {
        name: {resolve(t) for t, _ in imports(tree) if t.startswith("jaxrev")} - {None, name}
        for name, tree in modules.items()
    }
    for name, targets in graph.items():
        if not name.endswith("cli"):
            assert not any(t.split(".")[1] in APPS for t in targets if "." in t), name
        for layer, forbidden in ABOVE.items():
            if name == layer or name.startswith(layer + "."):
                bad = [
                    t for t in targets if any(t == f or t.startswith(f + ".") for f in forbidden)
                ]
                assert not bad, f"{name} imports {bad}"
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in graph.get(node, ()):
            assert state.get(nxt) != 1, " -> ".join([*path, node, nxt])
            if nxt not in state:
                visit(nxt, [*path, node])
        state[node] = 2

    for name in graph:
        if name not in state:
            visit(name, [])
