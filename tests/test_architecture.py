"""The one-way architecture: every package is in a layer of the import-linter contract, the contract holds,
and no two modules import each other, directly or through others (function-level imports count)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "vaedx"


def _layers() -> list[set[str]]:
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"][0]
    return [{name.strip() for name in layer.split("|")} for layer in cfg["layers"]]


def test_every_package_and_module_of_vaedx_is_in_a_layer():
    listed = set().union(*_layers())
    present = {f"vaedx.{p.name}" for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    present |= {f"vaedx.{p.stem}" for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    assert present - listed == set(), "add new packages to [tool.importlinter] in pyproject.toml"
    assert listed - present == set()


def test_layers_contract_holds():
    lint = Path(sys.executable).parent / "lint-imports"
    r = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:]


def _cycle(graph: grimp.ImportGraph) -> list[str] | None:
    """A module import cycle (as a path), found by depth-first search, or None."""
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph.find_modules_directly_imported_by(m)):
            if state.get(d) == 1:
                return stack[stack.index(d):] + [d]
            if d not in state and (found := visit(d)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph.modules):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_no_import_cycles_between_modules():
    graph = grimp.build_graph("vaedx")
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_cycle_finder_sees_a_planted_cycle():
    graph = grimp.ImportGraph()
    for a, b in [("p.a", "p.b"), ("p.b", "p.c"), ("p.c", "p.a"), ("p.d", "p.a")]:
        graph.add_import(importer=a, imported=b)
    assert _cycle(graph) == ["p.a", "p.b", "p.c", "p.a"]
