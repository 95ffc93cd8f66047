"""The package layout's rules, checked by walking every module's imports (``ast``, nothing is imported).

Every ``import`` counts, at module level and inside functions: a function-level import does not hide a
cycle. Only imports under ``if TYPE_CHECKING:`` are skipped (they never run; they exist for annotations).

Checked: no cycle between modules nor between packages (a package is ``pgan.<name>``, a folder or a
top-level module); the arrows of :data:`RULES`; that no module takes another's private names
(``from pgan.a import _x``, or ``X._y`` off a name ``X`` imported from another module); and that a name
used from another package is listed in its module's ``__all__`` (which such a module must declare).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted((SRC / "pgan").rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or \
        (isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """The ``pgan`` modules ``module`` imports (``from a import b`` points at ``a.b`` when that is a module)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = module.split(".") if is_package else module.split(".")[:-1]
                pkg = pkg[: len(pkg) - (node.level - 1)]
                base = ".".join(pkg + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in MODULES else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return {m for m in found if m == "pgan" or m.startswith("pgan.")}


def _graph() -> dict[str, set[str]]:
    graph = {}
    for name, path in MODULES.items():
        deps = _imports(ast.parse(path.read_text(), str(path)), name, path.name == "__init__.py")
        graph[name] = {d for d in deps if d in MODULES and d != name}
    return graph


GRAPH = _graph()


def _package(module: str) -> str:
    """The room a module belongs to: ``pgan.<name>`` (``pgan`` itself for the root ``__init__``)."""
    return ".".join(module.split(".")[:2])


def _package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for module, deps in graph.items():
        pkg = _package(module)
        out.setdefault(pkg, set()).update(_package(d) for d in deps if _package(d) != pkg)
        for d in deps:
            out.setdefault(_package(d), set())
    return out


PACKAGE_GRAPH = _package_graph(GRAPH)


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    base = node.module or ""
    if node.level:
        pkg = module.split(".") if is_package else module.split(".")[:-1]
        pkg = pkg[: len(pkg) - (node.level - 1)]
        base = ".".join(pkg + ([base] if base else []))
    return base


def _imported_names(tree: ast.AST, module: str, is_package: bool) -> list[tuple[str, str, str]]:
    """``(source module, name, how)`` for every name this module takes from another ``pgan`` module:
    ``how`` is ``"import"`` (``from pgan.a.b import name``) or ``"attribute"`` (``X.name`` where ``X`` was
    imported from another module, so ``X._name`` reaches into that module's privates). Attributes of
    other objects (``obj._x`` on a variable) are not followed: their type is not known here."""
    found: list[tuple[str, str, str]] = []
    imported: dict[str, str] = {}  # local name -> the module it came from
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = _absolute(node, module, is_package)
            if not (base == "pgan" or base.startswith("pgan.")) or base == module:
                continue
            for alias in node.names:
                if f"{base}.{alias.name}" in MODULES:  # a module, not a name
                    imported[alias.asname or alias.name] = f"{base}.{alias.name}"
                    continue
                found.append((base, alias.name, "import"))
                imported[alias.asname or alias.name] = base
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname and alias.name.startswith("pgan.") and alias.name != module:
                    imported[alias.asname] = alias.name
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in imported:
            found.append((imported[node.value.id], node.attr, "attribute"))
    return found


def _declared_all(path: Path) -> set[str] | None:
    for node in ast.parse(path.read_text(), str(path)).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            return set(ast.literal_eval(node.value))
    return None


def _contract_breaches(modules: dict[str, Path]) -> list[str]:
    """Private names used outside their module, and names used across packages that their module's
    ``__all__`` does not list (or that come from a module without one)."""
    bad = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        for source, used, how in _imported_names(tree, name, path.name == "__init__.py"):
            if _is_private(used):
                bad.append(f"{name}: private {source}.{used} ({how})")
            elif how == "import" and source in modules and _package(source) != _package(name):
                declared = _declared_all(modules[source])
                if used.startswith("__"):
                    continue
                if declared is None:
                    bad.append(f"{name}: {source} declares no __all__ (it gives {used} to another package)")
                elif used not in declared:
                    bad.append(f"{name}: {source}.{used} is not in {source}.__all__")
    return bad


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    comp.append(m)
                    if m == node:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def _under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


# (importer prefix, allowed target prefixes or None, forbidden target prefixes, why)
RULES = [
    ("pgan.data.datasets", ("pgan.data.datasets", "pgan.data.records", "pgan.data.splits", "pgan.errors",
                            "pgan.utils"), (), "readers depend on nothing of ours but records"),
    ("pgan.models", None, ("pgan.data", "pgan.engine", "pgan.parts", "pgan.detection", "pgan.synth",
                           "pgan.bench"), "the network knows no data, training or part files"),
    ("pgan.evaluation", None, ("pgan.data.datasets",), "metrics know no readers"),
    ("pgan.detection", None, ("pgan.models",), "part regions are bottom-up, independent of the re-ID network"),
    ("pgan.parts", None, ("pgan.detection", "pgan.models", "pgan.engine"), "parts sit below the detector"),
    ("pgan.data", None, ("pgan.parts", "pgan.engine", "pgan.models", "pgan.detection"),
     "data is below parts: the dataset takes masks through data.image_dataset.MaskSource"),
    ("pgan.inference", None, ("pgan.engine",),
     "inference needs the network and its checkpoint (pgan.models.trained), not the training code"),
]
LIBRARY = ("pgan.data", "pgan.models", "pgan.parts", "pgan.detection", "pgan.engine", "pgan.evaluation",
           "pgan.losses", "pgan.synth", "pgan.utils", "pgan.viz")


def test_the_walk_sees_the_packages_and_their_imports():
    assert {"pgan.cli", "pgan.models.network", "pgan.detection.model", "pgan.synth.generate",
            "pgan.bench.runtime", "pgan.data.splits"} <= set(MODULES)
    assert "pgan.models.backbones" in GRAPH["pgan.models.network"]
    assert "pgan.engine.train" in GRAPH["pgan.cli"]  # a function-level import is seen


def test_a_cycle_behind_a_function_level_import_is_found():
    a = ast.parse("from pgan.b import x\n")
    b = ast.parse("def f():\n    import pgan.a\n")
    graph = {"pgan.a": _imports(a, "pgan.a", False), "pgan.b": _imports(b, "pgan.b", False)}
    assert _cycles(graph) == [["pgan.a", "pgan.b"]]
    only_typing = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pgan.a\n")
    assert _imports(only_typing, "pgan.b", False) == set()
    assert _cycles({"pgan.a": {"pgan.b"}, "pgan.b": set()}) == []


def test_no_import_cycles():
    assert _cycles(GRAPH) == []


def test_a_package_cycle_made_of_acyclic_modules_is_found():
    graph = {"pgan.data.a": {"pgan.parts.x"}, "pgan.parts.x": set(), "pgan.parts.y": {"pgan.data.b"},
             "pgan.data.b": set()}
    assert _cycles(graph) == []
    assert _cycles(_package_graph(graph)) == [["pgan.data", "pgan.parts"]]


def test_no_package_cycles():
    assert _cycles(PACKAGE_GRAPH) == []


def test_private_names_taken_from_another_module_are_found():
    tree = ast.parse("from pgan.b.m import _x, y\nfrom pgan.a.n import _sibling\nimport pgan.b.m as mod\n"
                     "def f(z):\n    return y._secret, mod._COLS, z._unknown, _x, _own\n")
    uses = _imported_names(tree, "pgan.a.k", False)
    for use in [("pgan.b.m", "_x", "import"), ("pgan.a.n", "_sibling", "import"),
                ("pgan.b.m", "_secret", "attribute"), ("pgan.b.m", "_COLS", "attribute")]:
        assert use in uses
    assert not any(name in ("_own", "_unknown") for _, name, _ in uses)  # its own; an object of unknown type
    only_typing = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pgan.b.m import _T\n")
    assert [n for _, n, _ in _imported_names(only_typing, "pgan.a.k", False)] == ["_T"]  # a use all the same


def test_private_names_stay_in_their_module_and_shared_names_are_declared():
    assert _contract_breaches(MODULES) == []


@pytest.mark.parametrize("importer, allowed, forbidden, why", RULES, ids=[r[0] for r in RULES])
def test_imports_point_the_right_way(importer, allowed, forbidden, why):
    bad = []
    for module, deps in GRAPH.items():
        if not _under(module, importer):
            continue
        for dep in deps:
            if allowed is not None and not any(_under(dep, a) for a in allowed):
                bad.append(f"{module} -> {dep}")
            if any(_under(dep, f) for f in forbidden):
                bad.append(f"{module} -> {dep}")
    assert not bad, f"{why}: {bad}"


def test_the_library_does_not_import_the_cli_the_demo_or_the_benchmarks():
    top = ("pgan.cli", "pgan.demo", "pgan.bench", "pgan.__main__")
    bad = [f"{m} -> {d}" for m, deps in GRAPH.items() if any(_under(m, p) for p in LIBRARY)
           for d in deps if any(_under(d, t) for t in top) and not m.endswith(".cli")]
    assert not bad
