"""The package's structure as a test: imports point down the layers only, no import cycle (imports
inside functions counted), no module over 500 lines, code cites docs inside the repository, and the
wheel's package list covers the tree (docs/theory.md and README's layout section describe the layers)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "scoregan"

#: The layers, bottom up: a module may import its own layer and the ones below, never above.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("scoregan", "scoregan._checks", "scoregan.checkpoint", "scoregan.plotting", "scoregan.schema"),
    ("scoregan.objectives",),
    ("scoregan.flows", "scoregan.scores", "scoregan.models"),
    ("scoregan.data", "scoregan.metrics"),
    ("scoregan.sampling", "scoregan.diagnostics"),
    ("scoregan.trainers",),
    ("scoregan.experiment", "scoregan.config"),
    ("scoregan.api", "scoregan.cli", "scoregan.__main__"),
)


def _modules() -> dict[str, Path]:
    out = {}
    for p in PACKAGE.rglob("*.py"):
        parts = p.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = p
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, int, bool]]:
    """(imported scoregan module, line, inside a function) for every import statement of the module."""
    tree = ast.parse(path.read_text())
    in_function: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            in_function.update(id(n) for n in ast.walk(node) if n is not node)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                base = ".".join(pkg[: len(pkg) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in modules:
                t = t.rpartition(".")[0]
            if t and t != name and not t.startswith(name + "."):  # a package importing its own parts is fine
                out.append((t, node.lineno, id(node) in in_function))
    return out


def _layer(module: str) -> int:
    best = None
    for i, layer in enumerate(LAYERS):
        for prefix in layer:
            if module == prefix or module.startswith(prefix + "."):
                if best is None or len(prefix) > best[1]:
                    best = (i, len(prefix))
    assert best is not None, f"module {module} belongs to no layer of LAYERS: add it"
    return best[0]


@pytest.fixture(scope="module")
def graph() -> dict[str, list[tuple[str, int, bool]]]:
    modules = _modules()
    return {m: _imports(m, p, modules) for m, p in modules.items()}


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in edges:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle(graph):
    edges = {m: {t for t, _, _ in imps} for m, imps in graph.items()}
    assert _cycles(edges) == []


def test_imports_point_down_the_layers(graph):
    upward = [f"{m}:{line} imports {t}" for m, imps in graph.items() for t, line, _ in imps
              if _layer(t) > _layer(m)]
    assert upward == []


def test_only_the_top_imports_the_experiment_layer(graph):
    allowed = ("scoregan.experiment", "scoregan.config", "scoregan.api", "scoregan.cli", "scoregan.__main__")
    offenders = [f"{m}:{line}" for m, imps in graph.items() for t, line, _ in imps
                 if t.startswith(("scoregan.experiment", "scoregan.config")) and not m.startswith(allowed)]
    assert offenders == []


def test_no_scoregan_import_inside_a_function(graph):
    """Function-level imports of the package hide the dependency graph (they were how cycles were broken)."""
    hidden = [f"{m}:{line} imports {t}" for m, imps in graph.items() for t, line, inside in imps if inside]
    assert hidden == []


def test_modules_stay_small():
    big = {str(p.relative_to(ROOT)): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > 500}
    assert big == {}


def test_code_cites_documents_inside_the_repository():
    cited = [str(p.relative_to(ROOT)) for p in PACKAGE.rglob("*.py") if "DESIGN.md" in p.read_text()]
    assert cited == []
    for p in PACKAGE.rglob("*.py"):
        for section in re.findall(r"docs/theory\.md §(\d+)", p.read_text()):
            assert f"## {section}. " in (ROOT / "docs" / "theory.md").read_text(), (p, section)


def test_the_wheel_lists_every_package():
    """pyproject.toml names the packages explicitly (configs/ is mapped into the wheel as package data)."""
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in PACKAGE.rglob("__init__.py")}
    assert listed - {"scoregan.configs"} == on_disk


def test_layers_cover_the_package():
    for m in _modules():
        _layer(m)
