"""Every third-party import of src/vaedx is declared in pyproject.toml, and the code that runs without
extras never needs one.

A package that is importable only because another dependency pulls it in (click through typer) breaks the
day that dependency drops it; an extra's package imported at module level on the CLI's start-up path makes
``pip install vaedx`` fail at the first command. Both are caught here from the source alone.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata as md
import re
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "vaedx"
# Modules whose import must work with only the base dependencies installed: the package, its console
# script and its Python API.
ENTRY_POINTS = ("vaedx", "vaedx.cli", "vaedx.cli.__main__", "vaedx.api")
# Import names of optional packages that are not installed in the test environment, so
# packages_distributions() cannot map them; only packages guarded by ``except ImportError`` may be here.
NOT_INSTALLED = {"umap": "umap-learn"}


@dataclass(frozen=True)
class Import:
    module: str  # the vaedx module that imports
    name: str  # the full imported name ("numpy.typing", "vaedx.io.dicom")
    lazy: bool  # inside a function or guarded by ``except ImportError``
    line: int


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _guards_import_error(node: ast.Try) -> bool:
    for h in node.handlers:
        names = h.type.elts if isinstance(h.type, ast.Tuple) else [h.type]
        if any(isinstance(n, ast.Name) and n.id in ("ImportError", "ModuleNotFoundError") for n in names):
            return True
    return False


def _imports(path: Path) -> list[Import]:
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[Import] = []

    def visit(node: ast.AST, lazy: bool) -> None:
        for child in ast.iter_child_nodes(node):
            child_lazy = lazy or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            if isinstance(child, ast.Try) and _guards_import_error(child):
                for stmt in child.body:
                    visit_stmt(stmt, True)
                for part in (*child.handlers, *child.orelse, *child.finalbody):
                    visit_stmt(part, lazy)
                continue
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                continue
            visit_stmt(child, child_lazy)

    def visit_stmt(node: ast.AST, lazy: bool) -> None:
        if isinstance(node, ast.Import):
            found.extend(Import(module, a.name, lazy, node.lineno) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            found.append(Import(module, name, lazy, node.lineno))
            if name.split(".")[0] == "vaedx":  # ``from vaedx.io import raster`` may import a module
                found.extend(Import(module, f"{name}.{a.name}", lazy, node.lineno) for a in node.names)
        visit(node, lazy)

    visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)), False)
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _all_imports() -> list[Import]:
    return [i for p in sorted(PACKAGE.rglob("*.py")) for i in _imports(p)]


def _dist_name(requirement: str) -> str:
    return _norm(re.split(r"[\s<>=!~\[;(]", requirement.strip(), maxsplit=1)[0])


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> tuple[set[str], dict[str, set[str]]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    base = {_dist_name(r) for r in project["dependencies"]}
    extras = {
        extra: {_dist_name(r) for r in reqs}
        for extra, reqs in project.get("optional-dependencies", {}).items()
        if extra != "dev"
    }
    return base, extras


@functools.cache
def _installed() -> dict[str, list[str]]:
    return md.packages_distributions()


def _distributions(top: str) -> set[str]:
    mapped = _installed().get(top)
    if mapped:
        return {_norm(d) for d in mapped}
    return {_norm(NOT_INSTALLED[top])} if top in NOT_INSTALLED else set()


def _third_party(imp: Import) -> str | None:
    top = imp.name.split(".")[0]
    return None if top in sys.stdlib_module_names or top == "vaedx" else top


def test_ast_walk_sees_lazy_guarded_and_relative_imports(tmp_path):
    pkg = tmp_path / "vaedx" / "sub"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    src = pkg / "m.py"
    src.write_text(
        "import numpy\nfrom . import sibling\nfrom ..io import raster\n"
        "try:\n    import umap\nexcept ImportError:\n    umap = None\n"
        "def f():\n    import fastapi\n"
    )
    global PACKAGE
    saved, PACKAGE = PACKAGE, tmp_path / "vaedx"
    try:
        got = {(i.name, i.lazy) for i in _imports(src)}
    finally:
        PACKAGE = saved
    assert got == {
        ("numpy", False), ("vaedx.sub", False), ("vaedx.sub.sibling", False), ("vaedx.io", False),
        ("vaedx.io.raster", False),
        ("umap", True), ("fastapi", True),
    }  # fmt: skip


def test_every_third_party_import_is_declared():
    base, extras = _declared()
    declared = base.union(*extras.values())
    problems = []
    for imp in _all_imports():
        top = _third_party(imp)
        if top is None:
            continue
        dists = _distributions(top)
        where = f"{imp.module}:{imp.line} imports {top}"
        if not dists:
            problems.append(f"{where}, which no installed distribution provides")
        elif not dists & declared:
            problems.append(f"{where} ({', '.join(sorted(dists))}), not declared in pyproject.toml")
        elif top in NOT_INSTALLED and not imp.lazy:
            problems.append(f"{where}, not installed here, without an ImportError guard")
    assert problems == []


def test_start_up_path_needs_no_extra():
    """Modules imported at module level from the entry points import only base dependencies there."""
    base, _ = _declared()
    by_module: dict[str, list[Import]] = {}
    for imp in _all_imports():
        by_module.setdefault(imp.module, []).append(imp)

    def parents(name: str) -> list[str]:
        parts = name.split(".")
        return [".".join(parts[: i + 1]) for i in range(len(parts))]

    seen: set[str] = set()
    todo = list(ENTRY_POINTS)
    problems = []
    while todo:
        mod = todo.pop()
        if mod in seen or mod not in by_module and not (PACKAGE.parent / mod.replace(".", "/")).exists():
            continue
        seen.add(mod)
        for imp in by_module.get(mod, []):
            if imp.lazy:
                continue
            if (top := _third_party(imp)) is None:
                todo.extend(m for m in parents(imp.name) if m.startswith("vaedx"))
            elif not _distributions(top) & base:
                problems.append(f"{mod}:{imp.line} imports {top} (an extra) at module level")
    assert {"vaedx", "vaedx.cli"} <= seen
    assert problems == []
