"""The shape of the code: layers, no import cycle, no reach into another module's private names, light imports.

The import graph is read from the source (``ast``), every ``import`` statement counted, those inside functions too.
Importing ``a.b.c`` also runs the ``__init__`` of ``a`` and ``a.b``, so those are edges as well, except for the
importer's own packages (already initialized when it runs). A package's lazily resolved attributes
(``tuner.__getattr__``) are looked up when used, never on import, so they are not edges.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

from conftest import ROOT, run_python

PACKAGES = ("tuner", "search_spaces")

# Data flows down: a module may import modules of its own layer or of lower layers only (DESIGN.md's layers).
LAYERS: list[tuple[str, ...]] = [
    # The vocabulary and the contract; the package itself, whose import loads only tuner.errors (its API names
    # resolve on first use).
    ("tuner", "tuner.errors", "tuner.spec", "tuner.hp", "tuner._signals", "tuner._quiet", "tuner.accel"),
    # Definitions, data, the store, and the pure strategy helpers over the vocabulary.
    ("search_spaces", "tuner.data", "tuner.records", "tuner.store", "tuner._features", "tuner.warm_start",
     "tuner._rdb_read"),
    ("tuner.experiment", "tuner.runner", "tuner.isolate", "tuner._checkpoint",
     "tuner._callbacks", "tuner._device_data"),  # words -> experiment; one trial's training (in a process)
    ("tuner.study", "tuner.objective"),  # the study's rules; one trial recorded
    ("tuner.plan", "tuner._workers"),  # what a search process does; the worker processes it starts
    ("tuner.engines",),  # who proposes the next configuration
    ("tuner.options",),  # the search's options, each engine's own
    ("tuner._search", "tuner._results", "tuner._export", "tuner._replay", "tuner.reeval", "tuner.reproduce",
     "tuner.dashboard",
     "tuner._report", "tuner._report_sections", "tuner._report_figures", "tuner._report_doc"),  # the report
    ("tuner.api",),  # the facade
    ("tuner.display", "tuner.cli"),  # printing and the command line
]


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _imports(name: str, path: Path) -> list[tuple[str, int, list[str]]]:
    """``(imported module, line, names imported from it)`` for every import statement of a project module."""
    is_package = path.name == "__init__.py"
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(alias.name, node.lineno, []) for alias in node.names if alias.name.split(".")[0] in PACKAGES]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")[: len(name.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            if base.split(".")[0] not in PACKAGES:
                continue
            names = [alias.name for alias in node.names]
            submodules = [f"{base}.{n}" for n in names if f"{base}.{n}" in MODULES]
            out.append((base, node.lineno, [n for n in names if f"{base}.{n}" not in MODULES]))
            out += [(sub, node.lineno, []) for sub in submodules]
    return out


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in MODULES.items():
        own = set(_ancestors(name)) | {name}
        for target, _, _ in _imports(name, path):
            for module in [*_ancestors(target), target]:
                if module in MODULES and module not in own:
                    graph[name].add(module)
    return graph


def _layer(module: str) -> int:
    best = None
    for index, layer in enumerate(LAYERS):
        for prefix in layer:
            if module == prefix or module.startswith(prefix + ".") and prefix != "tuner":
                best = index if best is None else best
    if best is None:
        raise AssertionError(f"{module} is in no layer of tests/test_layering.py; add it where it belongs")
    return best


def test_every_module_is_in_a_layer_and_imports_only_downwards():
    upward = []
    for module, targets in _graph().items():
        for target in targets:
            if _layer(target) > _layer(module):
                upward.append(f"{module} (layer {_layer(module)}) imports {target} (layer {_layer(target)})")
    for module in MODULES:
        _layer(module)
    assert not upward, "\n".join(sorted(upward))


def test_the_package_imports_have_no_cycle():
    graph = _graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for module in sorted(MODULES):
        if module not in state and (cycle := visit(module)):
            pytest.fail("import cycle: " + " -> ".join(cycle))


def test_a_cycle_is_found_when_there_is_one(monkeypatch):
    # The cycle check itself can fail: plant tuner.hp -> tuner.cli on top of the real graph.
    real = _graph()
    real["tuner.hp"] = real.get("tuner.hp", set()) | {"tuner.cli"}
    monkeypatch.setitem(globals(), "_graph", lambda: real)
    with pytest.raises(pytest.fail.Exception, match="import cycle: .*tuner.hp"):
        test_the_package_imports_have_no_cycle()


def _package_of(module: str) -> str:
    return module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]


def test_no_module_uses_another_modules_private_names():
    """``from m import _x`` and ``m._x`` are for ``m``'s own package only (its private submodules, e.g.
    ``from search_spaces import _blocks`` inside ``search_spaces``); everyone else uses public names."""
    found = []
    for name, path in MODULES.items():
        package = _package_of(name)
        bound: dict[str, str] = {}  # local name -> project module it is bound to
        for target, line, names in _imports(name, path):
            parts = target.split(".")
            private_at = next((i for i, p in enumerate(parts) if p.startswith("_") and not p.startswith("__")), None)
            if private_at is not None:
                owner = ".".join(parts[:private_at])
                if not (package == owner or package.startswith(owner + ".")):
                    found.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
            for imported in names:
                if imported.startswith("_") and not imported.startswith("__"):
                    found.append(f"{path.relative_to(ROOT)}:{line} imports {imported} from {target}")
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in MODULES:
                        local = alias.asname or alias.name.split(".")[0]
                        bound[local] = alias.name if alias.asname else local
            elif isinstance(node, ast.ImportFrom) and node.module:
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    if full in MODULES:
                        bound[alias.asname or alias.name] = full
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in bound
                    and node.attr.startswith("_") and not node.attr.startswith("__")):
                target = bound[node.value.id]
                if f"{target}.{node.attr}" in MODULES and _package_of(f"{target}.{node.attr}") in (package,):
                    continue  # a private submodule of the importer's own package
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} uses {target}.{node.attr}")
    assert not found, "\n".join(found)


def test_no_module_of_the_package_is_over_400_lines():
    long = {str(p.relative_to(ROOT)): n for p in (ROOT / "tuner").rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 400}
    assert not long, long


@pytest.mark.parametrize("statement", ["import search_spaces", "import tuner.hp", "import tuner",
                                       "import search_spaces, tuner.hp; from tuner import CnntuneError"])
def test_light_imports_load_neither_the_api_nor_keras_nor_optuna(statement):
    code = (
        f"import sys\n{statement}\n"
        "heavy = sorted(m for m in sys.modules if m == 'tuner.api' or m.split('.')[0] in "
        "('keras', 'tensorflow', 'keras_tuner', 'optuna', 'torch', 'jax'))\n"
        "assert not heavy, heavy\n"
    )
    run_python(code)


def test_the_public_api_resolves_lazily():
    code = (
        "import sys, tuner\n"
        "assert 'tuner.api' not in sys.modules\n"
        "from tuner import search, export, best, trials, worker, reevaluate, Display\n"
        "import tuner.api, tuner.reproduce\n"
        "assert tuner.search is tuner.api.search and callable(tuner.export)\n"
        "assert tuner.reproduce.reproduce is tuner.api.reproduce\n"
    )
    run_python(code)


def test_the_readme_layout_table_matches_the_tree():
    text = (ROOT / "README.md").read_text()
    table = text[text.index("## Layout"):]
    table = table[: table.index("\n## ", 1)] if "\n## " in table[1:] else table
    rows = [line.split("|")[1].strip().strip("`") for line in table.splitlines() if line.startswith("| `")]
    listed = {row.rstrip("/") for row in rows}
    missing = [row for row in listed if not (ROOT / row).exists()]
    assert not missing, f"README's Layout names paths that do not exist: {missing}"
    modules = {str(p.relative_to(ROOT)) for p in (ROOT / "tuner").glob("*.py") if p.name != "__init__.py"}
    modules |= {str(p.relative_to(ROOT)) for p in (ROOT / "tuner").iterdir() if p.is_dir() and p.name != "__pycache__"}
    unlisted = sorted(m for m in modules if m not in listed)
    assert not unlisted, f"README's Layout does not list: {unlisted}"
