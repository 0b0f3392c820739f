"""The project's layers, read from its source: core < results < study < bench, no import upwards and no cycle.

Every ``.py`` under the four packages is parsed with ``ast``; every import counts, at the top of a module or
inside a function, absolute or relative. ``from package import name`` is an import of ``package.name`` when
that is a module of the project, else of ``package``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ("denoise_core", "results", "study", "bench")  # each may import only itself and the layers before it


def module_names(root: Path, packages: tuple[str, ...]) -> dict[str, Path]:
    """``package.module`` (``package`` for an ``__init__.py``) for every Python file under ``packages``."""
    found = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imported_names(module: str, path: Path) -> set[str]:
    """Every dotted name ``module`` imports, and for ``from X import Y`` both ``X.Y`` and ``X``."""
    is_package = path.name == "__init__.py"
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, *([base] if base else [])])
            names |= {base} | {f"{base}.{alias.name}" for alias in node.names}
    return names


def import_graph(root: Path, packages: tuple[str, ...] = LAYERS) -> dict[str, set[str]]:
    """Project module -> the project modules it imports (a name resolves to its longest prefix that is a module)."""
    modules = module_names(root, packages)
    graph = {}
    for module, path in modules.items():
        targets = set()
        for name in imported_names(module, path):
            parts = name.split(".")
            prefixes = (".".join(parts[:end]) for end in range(len(parts), 0, -1))
            target = next((prefix for prefix in prefixes if prefix in modules), None)
            if target and target != module:
                targets.add(target)
        graph[module] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def upward_imports(graph: dict[str, set[str]], layers: tuple[str, ...] = LAYERS) -> list[str]:
    """``importer -> imported`` for every import of a later layer by an earlier one."""
    rank = {layer: position for position, layer in enumerate(layers)}
    return sorted(f"{module} -> {target}" for module, targets in graph.items() for target in targets
                  if rank[target.split(".")[0]] > rank[module.split(".")[0]])


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph(ROOT)


def test_the_walker_sees_the_projects_imports(graph):
    assert len(graph) >= 40 and set(LAYERS) <= {module.split(".")[0] for module in graph}
    assert "results.study_dir" in graph["results.report"]  # a top-level from-import
    assert "results.analysis" in graph["results.sections"]  # an import inside a function
    assert "results.grids" in graph["results.sections"]  # from results import grids: a module by from-import
    assert "study.study" in graph["study.run"]  # inside main()


def test_no_import_cycle_among_the_projects_modules(graph):
    assert cycles(graph) == [], f"import cycles (each list is one group of modules importing each other): {cycles(graph)}"


def test_no_layer_imports_a_layer_above_it(graph):
    """The core imports neither study nor results, results does not import study (core < results < study < bench)."""
    assert upward_imports(graph) == [], f"imports of a higher layer ({' < '.join(LAYERS)}): {upward_imports(graph)}"


def write_tree(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def test_the_walker_finds_cycles_through_functions_relative_and_module_from_imports(tmp_path):
    write_tree(tmp_path, {
        "low/__init__.py": "",
        "low/a.py": "def f():\n    from low import b\n",  # b is a module: an import of low.b
        "low/b.py": "from .c import thing\n",  # relative: low.c
        "low/c.py": "import low.a\n",
        "low/d.py": "from low.a import f\n",  # f is not a module: an import of low.a, in no cycle
        "high/__init__.py": "from . import e\n",
        "high/e.py": "from low import d\n",
    })
    graph = import_graph(tmp_path, ("low", "high"))
    assert graph["low.a"] == {"low", "low.b"} and graph["low.b"] == {"low.c"} and graph["high"] == {"high.e"}
    assert cycles(graph) == [["low.a", "low.b", "low.c"]]
    assert upward_imports(graph, ("low", "high")) == []


def test_the_walker_names_an_import_of_a_higher_layer(tmp_path):
    write_tree(tmp_path, {"low/x.py": "def f():\n    import high.y\n", "high/y.py": "import low.x\n"})
    graph = import_graph(tmp_path, ("low", "high"))
    assert upward_imports(graph, ("low", "high")) == ["low.x -> high.y"]
    assert cycles(graph) == [["high.y", "low.x"]]
