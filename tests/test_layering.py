"""The shape of the code that import-linter cannot check, and import-linter's own contracts.

The layers, the private-module rule and the absence of import cycles are import-linter contracts in pyproject.toml
(``lint-imports``, run by ``make test``); here they are run once more, and shown to fail on a planted upward import.
What is checked here: no module uses another module's private *names* (``from m import _x``, ``m._x``), no module is
over 400 lines, light imports stay light, the public API resolves lazily, and README's Layout table lists the tree.
The imports are read from the source (``ast``), those inside functions too.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, run_python

PACKAGES = ("tuner", "search_spaces")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint_imports(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT_IMPORTS), "--config", str(root / "pyproject.toml"), "--no-cache"], cwd=root,
                          capture_output=True, text=True, timeout=300, env={"PYTHONPATH": str(root), "PATH": ""})


def test_the_import_contracts_are_kept():
    proc = _lint_imports(ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout


def test_an_upward_import_breaks_the_contracts(tmp_path):
    # The contracts can fail: the vocabulary (tuner.hp) planted with an import of a trial's private module.
    for name in ("tuner", "search_spaces"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    with (tmp_path / "tuner" / "hp.py").open("a") as f:
        f.write("\nfrom tuner.trial import _runner  # planted\n")
    proc = _lint_imports(tmp_path)
    assert proc.returncode != 0
    broken = [line for line in proc.stdout.splitlines() if line.endswith("BROKEN")]
    assert any(line.startswith("tuner's subpackages and modules are layered") for line in broken), proc.stdout
    assert any(line.startswith("a private module") for line in broken), proc.stdout


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


def _package_of(module: str) -> str:
    return module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]


def test_no_module_uses_another_modules_private_names():
    """``from m import _x`` and ``m._x`` are for ``m`` itself; a private submodule ``p._m`` may be bound and used by
    ``p``'s own package (``from search_spaces import _blocks`` inside ``search_spaces``)."""
    found = []
    for name, path in MODULES.items():
        package = _package_of(name)
        bound: dict[str, str] = {}  # local name -> project module it is bound to
        for target, line, names in _imports(name, path):  # private modules: import-linter's contract
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
        "import tuner.api\n"
        "assert tuner.search is tuner.api.search and callable(tuner.export)\n"
        "assert tuner.reproduce is tuner.api.reproduce and tuner.write_reproduction is tuner.api.write_reproduction\n"
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
    modules |= {str(p.parent.relative_to(ROOT)) for p in (ROOT / "tuner").rglob("__init__.py")
                if p.parent != ROOT / "tuner"}
    unlisted = sorted(m for m in modules if m not in listed)
    assert not unlisted, f"README's Layout does not list: {unlisted}"
