"""The package's shape: no import cycle among ``s2g_deploy`` modules (imports under ``TYPE_CHECKING`` aside).

Imports inside functions count too: a lazy import still makes one module depend on the other, and a
cycle of them is selection and export calling each other (issue 15).
"""

from __future__ import annotations

import ast
from pathlib import Path

import s2g_deploy

PACKAGE = Path(s2g_deploy.__file__).parent


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, module: str, is_package: bool, modules: set[str]) -> set[str]:
    """The ``s2g_deploy`` modules ``tree`` imports, anywhere but under ``if TYPE_CHECKING:``."""
    out: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name in modules)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module if is_package else module.rpartition(".")[0]
                for _ in range(node.level - 1):
                    package = package.rpartition(".")[0]
                base = f"{package}.{base}" if base else package
            for a in node.names:
                name = f"{base}.{a.name}"
                out.add(name if name in modules else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return {m for m in out if m in modules and m != module}


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    names = set(modules)
    return {
        name: _imports(ast.parse(path.read_text(encoding="utf-8")), name, path.name == "__init__.py", names)
        for name, path in modules.items()
    }


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_no_import_cycle_among_package_modules():
    graph = import_graph()
    assert "s2g_deploy.export.pipeline" in graph and graph["s2g_deploy.api"]  # the walk sees the package
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def _commands(tree: ast.AST):
    """The functions of a cli module registered as commands (decorated ``@<app>.command(...)``)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            for d in node.decorator_list:
                target = d.func if isinstance(d, ast.Call) else d
                if isinstance(target, ast.Attribute) and target.attr == "command":
                    yield node


def test_every_command_calls_exactly_one_api_function():
    found = {}
    for path in sorted((PACKAGE / "cli").glob("*.py")):
        for command in _commands(ast.parse(path.read_text(encoding="utf-8"))):
            calls = [
                n.func.attr
                for n in ast.walk(command)
                if isinstance(n, ast.Call)
                and isinstance(n.func, ast.Attribute)
                and isinstance(n.func.value, ast.Name)
                and n.func.value.id == "api"
            ]
            found[f"{path.stem}.{command.name}"] = calls
    assert len(found) >= 17, found  # every command of `s2g --help`, the groups' subcommands included
    wrong = {name: calls for name, calls in found.items() if len(calls) != 1}
    assert not wrong, f"commands that do not call exactly one api function: {wrong}"


def test_the_library_face_imports_no_torch():
    import subprocess
    import sys

    code = "import sys, s2g_deploy.api, s2g_deploy.cli.app; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"
