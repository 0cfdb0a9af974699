"""Imports only point down: every `backend` module's imports (module level and inside functions alike) are parsed
and checked against the table of allowed edges between packages, and the module graph must have no cycle.
A failure names the offending file, line and import."""

import ast
import sys
from pathlib import Path

import pytest

BACKEND = Path(__file__).resolve().parents[1] / "backend"

# package → the other packages of `backend` it imports (its own modules it may always import); only edges that exist
# (`test_the_table_names_only_edges_that_exist`), so a new arrow between packages is a deliberate change here
ALLOWED = {
    "core": set(),
    "labelstudio": {"core"},
    "models": {"core"},
    "store": {"core"},
    "registry": {"core"},
    "adapters": {"core", "models"},
    "pipelines": {"core", "adapters", "registry"},
    "training": {"core", "labelstudio", "models", "registry"},
    "review": {"core", "labelstudio"},
    "predictions": {"core", "labelstudio", "pipelines"},
    "jobs": {"core", "labelstudio", "store", "registry", "adapters", "pipelines", "predictions", "training", "review"},
    "service": {"core", "labelstudio", "store", "registry", "pipelines", "predictions", "review", "jobs"},
}


def _type_checking(node: ast.AST) -> bool:
    """An `if TYPE_CHECKING:` block: its imports serve annotations only and never run."""
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING" or
                                         isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _runtime_nodes(tree: ast.AST):
    """Every node of `tree` but those inside `if TYPE_CHECKING:` blocks."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        children = list(ast.iter_child_nodes(node))
        if _type_checking(node):
            children = [c for c in children if c not in node.body]
        stack.extend(children)


def backend_imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported module) for every `backend.*` import in the file that runs, wherever it stands (imports under
    `if TYPE_CHECKING:` are for annotations and never run)."""
    found = []
    for node in _runtime_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            found += [(node.lineno, n) for n in names if n.startswith("backend.")]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("backend.")]
    return found


def module_name(path: Path) -> str:
    parts = path.relative_to(BACKEND.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(BACKEND.rglob("*.py"))}


def package_of(module: str) -> str:
    """"backend.core.errors" → "core"; "" for the root package itself (its version string)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and (BACKEND / parts[1]).is_dir() else ""


def wrong_way_imports() -> list[str]:
    """'file:line: imports X (package A may not import package B)' for every import against the table."""
    problems = []
    for name, path in modules().items():
        source = package_of(name)
        seen = set()
        for line, target in backend_imports(path):
            destination = package_of(target)
            if (destination and destination != source and destination not in ALLOWED.get(source, set())
                    and (line, destination) not in seen):
                seen.add((line, destination))
                problems.append(f"{path.relative_to(BACKEND.parent)}:{line}: imports {target} "
                                f"({source or 'backend'} may not import {destination})")
    return problems


def import_cycles() -> list[list[str]]:
    """Cycles in the graph of `backend` modules (an edge per import of a module, wherever it stands)."""
    known = modules()
    graph = {name: sorted({t if t in known else t.rsplit(".", 1)[0] for _, t in backend_imports(path)} & set(known)
                          - {name}) for name, path in known.items()}
    cycles, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        stack.append(node)
        for nxt in graph[node]:
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = "done"

    for node in graph:
        if node not in state:
            visit(node, [])
    return cycles


def test_every_package_is_in_the_table():
    packages = {p.name for p in BACKEND.iterdir() if (p / "__init__.py").exists()}
    assert packages <= set(ALLOWED), packages - set(ALLOWED)


def package_edges() -> dict[str, set[str]]:
    """package → the other packages its modules import."""
    edges: dict[str, set[str]] = {}
    for name, path in modules().items():
        source = package_of(name)
        for _, target in backend_imports(path):
            if package_of(target) not in ("", source):
                edges.setdefault(source, set()).add(package_of(target))
    return edges


def test_the_table_names_only_edges_that_exist():
    edges = package_edges()
    assert {p: allowed - edges.get(p, set()) for p, allowed in ALLOWED.items() if allowed - edges.get(p, set())} == {}


def test_imports_only_point_down():
    assert wrong_way_imports() == []


def test_no_import_cycles():
    assert import_cycles() == []


def test_the_check_catches_a_planted_wrong_way_import(tmp_path, monkeypatch):
    """A copy of the tree with `core` importing `service` (inside a function, where it hides best): both the
    table check and the cycle check fail, naming the line."""
    import shutil

    copy = tmp_path / "backend"
    shutil.copytree(BACKEND, copy, ignore=shutil.ignore_patterns("__pycache__"))
    target = copy / "core" / "errors.py"
    target.write_text(target.read_text() + "\n\ndef sneaky():\n    from backend.service.app import create_app\n")
    monkeypatch.setattr(sys.modules[__name__], "BACKEND", copy)
    problems = wrong_way_imports()
    assert len(problems) == 1 and problems[0].startswith("backend/core/errors.py:") \
        and "core may not import service" in problems[0]
    assert any("backend.core.errors" in cycle for cycle in import_cycles())


def test_annotation_only_imports_are_not_edges_but_runtime_ones_are(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from backend.service.app import x\n"
                      "else:\n    from backend.core.errors import y\n\ndef f():\n    import backend.jobs.queue\n")
    assert sorted(name for _, name in backend_imports(module)) == ["backend.core.errors", "backend.core.errors.y",
                                                                    "backend.jobs.queue"]


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_no_package_imports_itself_through_a_higher_layer(package):
    assert all(package not in ALLOWED[other] or other not in ALLOWED[package] for other in ALLOWED)
