"""The layout rules of both packages, checked on their source (nothing is imported).

- The project's modules import each other in one direction: no import cycle among module-level
  imports (``if TYPE_CHECKING:`` blocks excluded, they never run).
- No project-internal import inside a function, except in command-line modules (``cli.py``,
  ``*_cli.py`` and modules of a ``cli`` package), where lazy imports keep ``--help`` fast.
- A core never imports its applications: ``jaxrev`` core modules do not import ``jaxrev.roas``;
  ``jaxssm`` core modules do not import ``jaxssm.locations`` or ``jaxssm.stargazers``.
- No module has more than 600 lines of code (blank lines, comments and docstrings not counted);
  literal tables live in data files.
"""

from __future__ import annotations

import ast
import io
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("jaxrev", "jaxssm")
APPLICATIONS = {"jaxrev": ("jaxrev.roas",), "jaxssm": ("jaxssm.locations", "jaxssm.stargazers")}
MAX_CODE_LINES = 600


def module_files() -> dict[str, Path]:
    """Dotted module name → file, for every module of both packages."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


MODULES = module_files()


def is_cli(name: str) -> bool:
    last = name.rsplit(".", 1)[-1]
    return last == "cli" or last.endswith("_cli") or ".cli." in f"{name}."


def resolve(module: str, node: ast.ImportFrom | ast.Import) -> list[str]:
    """The project modules an import statement names (a ``from p import m`` of a submodule
    counts as an import of ``p.m``)."""
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
        return [n for n in names if n in MODULES]
    if node.level:
        base = package
        for _ in range(node.level - 1):
            base = base.rpartition(".")[0]
        target = f"{base}.{node.module}" if node.module else base
    else:
        target = node.module or ""
    found = []
    for alias in node.names:
        sub = f"{target}.{alias.name}"
        found.append(sub if sub in MODULES else target)
    return [t for t in found if t in MODULES]


def in_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(module: str) -> tuple[set[str], list[tuple[int, str]]]:
    """(module-level project imports, [(line, target)] of function-level project imports)."""
    tree = ast.parse(MODULES[module].read_text())
    top: set[str] = set()
    nested: list[tuple[int, str]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and in_type_checking(child):
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                for target in resolve(module, child):
                    if in_function:
                        nested.append((child.lineno, target))
                    else:
                        top.add(target)
            function = isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            visit(child, in_function or function)

    visit(tree, False)
    top.discard(module)
    return top, nested


GRAPH = {name: imports_of(name) for name in MODULES}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def connect(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def code_lines(path: Path) -> int:
    """Lines holding code: not blank, not only a comment, not part of a docstring."""
    source = path.read_text()
    docstring_lines: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            first = node.body[0] if node.body else None
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                docstring_lines.update(range(first.lineno, first.end_lineno + 1))
    skip = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT}
    lines: set[int] = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type in skip or token.type == tokenize.ENDMARKER:
            continue
        lines.update(range(token.start[0], token.end[0] + 1))
    return len(lines - docstring_lines)


def test_the_checker_sees_the_packages():
    # Guards against a checker that passes because it found nothing to check.
    assert {"jaxrev", "jaxssm", "jaxssm.em", "jaxssm.laplace"} <= set(MODULES)
    assert len(MODULES) > 40
    assert "jaxssm.block_tridiag" in GRAPH["jaxssm.laplace"][0]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles():
    graph = {name: top for name, (top, _) in GRAPH.items()}
    assert cycles(graph) == []


def test_no_function_level_project_imports_outside_command_line_modules():
    offenders = [
        f"{MODULES[name].relative_to(ROOT)}:{line} imports {target}"
        for name, (_, nested) in GRAPH.items()
        if not is_cli(name)
        for line, target in nested
    ]
    assert offenders == []


@pytest.mark.parametrize("package", PACKAGES)
def test_cores_never_import_their_applications(package):
    apps = APPLICATIONS[package]

    def is_app(name: str) -> bool:
        return any(name == a or name.startswith(f"{a}.") for a in apps)

    offenders = [
        f"{name} imports {target}"
        for name, (top, nested) in GRAPH.items()
        if name.split(".")[0] == package and not is_app(name) and not is_cli(name)
        for target in top | {t for _, t in nested}
        if is_app(target)
    ]
    assert offenders == []


def test_no_module_over_600_lines_of_code():
    sizes = {name: code_lines(path) for name, path in MODULES.items()}
    assert code_lines(MODULES["jaxssm.em"]) > 100  # the counter counts
    assert {name: n for name, n in sizes.items() if n > MAX_CODE_LINES} == {}


@pytest.mark.parametrize("package", ["jaxrev", "jaxrev.roas", "jaxssm"])
def test_lazy_public_names_are_exactly_all_and_each_resolves(package):
    """The lazily loaded names (``_EXPORTS``) and ``__all__`` are written twice (``__all__``
    stays a literal for linters and type checkers): they must agree, and each name must be
    defined by the module it points at."""
    import importlib

    module = importlib.import_module(package)
    assert sorted(module._EXPORTS) == sorted(module.__all__)
    for name, source in module._EXPORTS.items():
        assert hasattr(importlib.import_module(source), name), f"{source} has no {name}"
