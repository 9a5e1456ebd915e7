"""The floors of ARCHITECTURE.md: imports only go down, and no module imports itself back.

Every `import` and `from … import` of an nncards module is read from the source (module level
and inside functions alike: a lazy import may keep TensorFlow off a light path, but never
dodge the order). A module imports modules of a lower floor, or of its own package.
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Source folders and the import name each one is installed as (pyproject's package-dir).
PACKAGES = {"plugin": "nncards", "cards": "nncards.cards", "server": "nncards.server"}
# Bottom to top; a module belongs to the longest prefix listed.
FLOORS = [
    ("nncards.ops", "nncards.keras_objects", "nncards.native"),
    ("nncards.layers",),
    ("nncards.contract",),
    ("nncards.card",),
    ("nncards.cards",),
    ("nncards.registry",),
    ("nncards.build", "nncards.docs"),
    ("nncards.execute",),
    ("nncards.interchange",),
    ("nncards",),
    ("nncards.server",),
    ("nncards.cli",),
]
FLOOR_OF = {prefix: level for level, prefixes in enumerate(FLOORS) for prefix in prefixes}


def module_name(path: Path) -> str:
    folder = path.relative_to(ROOT).parts[0]
    parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([PACKAGES[folder], *parts])


def modules() -> dict[str, Path]:
    found = {}
    for folder in PACKAGES:
        for path in sorted((ROOT / folder).rglob("*.py")):
            found[module_name(path)] = path
    return found


def group(module: str) -> str:
    """The longest FLOORS prefix that names the module or a package holding it."""
    matches = [p for p in FLOOR_OF if module == p or module.startswith(p + ".")]
    assert matches, f"{module} sits on no floor of ARCHITECTURE.md"
    return max(matches, key=len)


def imported(path: Path, name: str, known: dict[str, Path]) -> set[str]:
    """The nncards modules a module imports (a `from package import name` of a submodule counts
    as that submodule)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        found.update(t for t in targets if t == "nncards" or t.startswith("nncards."))
    return found - {name}


KNOWN = modules()
IMPORTS = {name: imported(path, name, KNOWN) for name, path in KNOWN.items()}


def test_every_module_sits_on_a_floor():
    assert {name: group(name) for name in KNOWN}


@pytest.mark.parametrize("name", sorted(KNOWN))
def test_imports_only_go_down(name):
    mine = group(name)
    upward = []
    for target in sorted(IMPORTS[name]):
        theirs = group(target)
        same_package = theirs == mine and mine != "nncards"
        if not same_package and FLOOR_OF[theirs] >= FLOOR_OF[mine]:
            upward.append(f"{target} (floor {FLOOR_OF[theirs]}, {name} is on {FLOOR_OF[mine]})")
    assert not upward, f"{name} imports up or sideways: {upward}"


def test_no_import_cycle():
    graph = {name: {t for t in targets if t in KNOWN} for name, targets in IMPORTS.items()}
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as exc:
        pytest.fail(f"import cycle: {' -> '.join(exc.args[1])}")


def test_the_check_sees_an_upward_import(tmp_path):
    """The checker itself: a contract module importing the executor is caught."""
    fake = ROOT / "plugin" / "contract" / "run.py"
    assert "nncards.execute.entry" not in IMPORTS[module_name(fake)]
    source = tmp_path / "probe.py"
    source.write_text("from nncards.execute.entry import execute\n")
    targets = imported(source, "nncards.contract.probe", KNOWN)
    assert FLOOR_OF[group(next(iter(targets)))] > FLOOR_OF[group("nncards.contract.probe")]
