"""The shape of the system: data flows one way through the layers, no module imports itself
through others, and the README's layout table is the tree."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "minireason"

# Every module's layer, in the order data flows; a module may import only from its own layer
# or from layers before it. backend, text, files, html_page and options are the foundation
# every layer may use.
LAYERS = [
    ("foundation", ["backend", "text", "files", "html_page", "options", "__init__"]),
    ("data", ["data"]),
    ("prep", ["prep"]),
    ("nn", ["nn"]),
    ("train", ["train"]),
    ("reason", ["reason"]),
    ("evaluation", ["evaluation"]),
    ("gpu", ["gpu"]),
    ("bench", ["bench"]),
    ("course", ["course"]),
    ("demo", ["demo"]),
    ("cli", ["cli"]),
]
RANK = {top: rank for rank, (_, tops) in enumerate(LAYERS) for top in tops}


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).with_suffix("")
        yield path, "minireason." + ".".join(rel.parts)


def _layer(dotted: str) -> str:
    """``minireason.prep.features`` -> ``prep``; ``minireason`` -> ``__init__``."""
    parts = dotted.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _is_module(dotted: str) -> bool:
    """Whether ``minireason.a.b`` is a module or a package of the tree."""
    where = ROOT.joinpath(*dotted.split("."))
    return where.with_suffix(".py").is_file() or (where / "__init__.py").is_file()


def _imports(path: Path) -> list[str]:
    """Every ``minireason...`` module a file imports, at any depth (lazy imports included);
    ``from minireason.reason import explain`` imports ``minireason.reason.explain``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] == "minireason"]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] == "minireason":
                for a in node.names:
                    sub = f"{node.module}.{a.name}"
                    found.append(sub if _is_module(sub) else node.module)
    return found


def test_every_module_has_a_layer():
    missing = {_layer(name) for _, name in _modules()} - set(RANK)
    assert not missing, f"modules outside any layer: {missing}; add them to LAYERS"


@pytest.mark.parametrize("path,name", list(_modules()), ids=lambda v: getattr(v, "name", v))
def test_imports_flow_one_way(path, name):
    own = RANK[_layer(name)]
    for imported in _imports(path):
        if imported == "minireason":
            continue  # the package itself (its version)
        layer = _layer(imported)
        assert RANK[layer] <= own, f"{name} imports {imported}, a later layer ({layer})"
        assert layer != "cli" or name == "minireason.cli", f"{name} imports the CLI"


def _import_cycle() -> list[str]:
    """One cycle of the import graph of every ``minireason`` module (a package stands for
    its ``__init__``), as ``[a, b, ..., a]``; empty when there is none."""
    graph = {name.removesuffix(".__init__"): set(_imports(path)) for path, name in _modules()}
    state: dict[str, str] = {}  # "open" while on the path, "done" once every import is seen
    path: list[str] = []

    def visit(module: str) -> list[str]:
        state[module] = "open"
        path.append(module)
        for imported in sorted(graph.get(module, ())):
            if state.get(imported) == "open":
                return [*path[path.index(imported) :], imported]
            if imported not in state and (cycle := visit(imported)):
                return cycle
        state[module] = "done"
        path.pop()
        return []

    for module in sorted(graph):
        if module not in state and (cycle := visit(module)):
            return cycle
    return []


def test_no_import_cycles():
    """No module imports itself through others, inside a layer too (the layer order only
    rules out cycles between layers)."""
    cycle = _import_cycle()
    assert not cycle, "import cycle: " + " -> ".join(cycle)


def test_data_prep_and_nn_stand_on_their_own():
    """DESIGN.md's rule for the early layers, stricter than the order: data needs nothing
    but the foundation, prep only data, and the network knows nothing of reviews."""
    allowed = {"data": {"data"}, "prep": {"data", "prep"}, "nn": {"nn"}}
    foundation = set(LAYERS[0][1])
    for path, name in _modules():
        layer = _layer(name)
        if layer in allowed:
            used = {_layer(i) for i in _imports(path)} - foundation
            assert used <= allowed[layer], f"{name} imports from {used - allowed[layer]}"


def test_no_package_level_reexports():
    """A subpackage's __init__ is documentation: an import says where the code is."""
    for init in PACKAGE.glob("*/__init__.py"):
        tree = ast.parse(init.read_text(encoding="utf-8"))
        code = [
            n
            for n in tree.body
            if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))
        ]
        assert ast.get_docstring(tree), f"{init} needs a docstring: what the layer does"
        if init.parent.name != "assignments":  # the registry of assignment names
            assert not code, f"{init} should hold only its docstring"


def test_readme_layout_table_is_the_tree():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Layout", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\| `([^`]+)`", section, re.M))
    assert listed, "no layout table in the README"
    for entry in listed:
        assert (ROOT / entry).exists(), f"README layout lists {entry}, which is not in the tree"
    layers = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    top_files = {p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py"}
    shown = {
        Path(e).parts[1] for e in listed if e.startswith("minireason/") and len(Path(e).parts) > 1
    }
    assert layers | top_files <= shown, f"not in the README layout: {(layers | top_files) - shown}"
