"""The rule of the house: imports flow one way, from the ground floor up to the CLI.

Each unit (a top-level module or package of `leannet`) has a floor (docs/architecture.md); a
unit may import from its own floor or below, never above, whether the import sits at the top of
a file or inside a function. The few upward imports that remain are listed in KNOWN, each with
the reason; the test fails on any new one, and on a listed one that has been fixed (so the list
only shrinks).
"""
from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "leannet"

FLOORS = {
    # 0: ground floor: no leannet imports but each other
    "errors": 0, "files": 0, "checks": 0, "_torch": 0, "plugins": 0, "distributed": 0,
    "leannet": 0,
    # 1: building blocks and measuring
    "nn": 1, "measure": 1,
    # 2: what models and data are
    "models": 2, "data": 2,
    # 3: the pruning engine and export of plain models
    "prune": 3, "export": 3,
    # 4: model folders (architecture + plans + weights)
    "checkpoint": 4, "iterative": 4,
    # 5: training, with task kinds plugging in from above
    "train": 5,
    # 6: task kinds and deployment runtimes
    "detect": 6, "multitask": 6, "deploy": 6,
    # 7: jobs: a model folder + a data source + checks
    "report": 7, "jobs": 7,
    # 8: the command line
    "cli": 8, "__main__": 8,
}

# (importing module, imported module): why it is still here.
KNOWN: dict[tuple[str, str], str] = {
}


UNITS = {p.stem for p in SRC.glob("*.py")} | {p.name for p in SRC.iterdir() if p.is_dir()}


def unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "leannet"


def module_name(path: Path) -> str:
    name = ".".join(("leannet", *path.relative_to(SRC).with_suffix("").parts))
    return name.removesuffix(".__init__")


def leannet_imports(path: Path) -> list[str]:
    """Every leannet module `path` imports, at the top or inside a function."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "leannet":  # `from leannet import io` imports leannet.io
                found += [f"leannet.{a.name}" for a in node.names if a.name in UNITS]
            elif node.module.split(".")[0] == "leannet":
                found.append(node.module)
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] == "leannet"]
    return found


def upward_imports() -> set[tuple[str, str]]:
    found = set()
    for path in SRC.rglob("*.py"):
        name = module_name(path)
        floor = FLOORS[unit(name)]
        for target in leannet_imports(path):
            if FLOORS[unit(target)] > floor:
                found.add((name, target))
    return found


def imports_inside_functions(path: Path) -> list[str]:
    """leannet modules imported inside a function of `path` (an import hidden from the reader,
    often to dodge a circle)."""
    found = []
    for fn in ast.walk(ast.parse(path.read_text())):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            found += [n.module for n in ast.walk(fn) if isinstance(n, ast.ImportFrom)
                      and n.module and n.module.split(".")[0] == "leannet"]
            found += [a.name for n in ast.walk(fn) if isinstance(n, ast.Import)
                      for a in n.names if a.name.split(".")[0] == "leannet"]
    return found


def test_leannet_imports_sit_at_the_top_below_the_cli():
    """Only the command line defers its imports (a command loads its job when it runs, so
    `leannet --help` and usage errors do not import torch, ONNX and the deployment toolchains:
    measured 4 s of CPU for the CLI alone against 15 s with every job). Optional third-party
    packages may be imported lazily anywhere; leannet's own modules may not."""
    found = {module_name(p): imports_inside_functions(p) for p in SRC.rglob("*.py")
             if unit(module_name(p)) != "cli"}
    hidden = {name: sorted(set(mods)) for name, mods in found.items() if mods}
    assert not hidden, f"leannet imports inside functions: {hidden}"


def test_every_unit_has_a_floor():
    units = {unit(module_name(p)) for p in SRC.rglob("*.py")}
    assert units <= set(FLOORS), f"add {sorted(units - set(FLOORS))} to FLOORS and the docs"


def test_no_import_points_up():
    found = upward_imports()
    new = sorted(found - set(KNOWN))
    assert not new, "imports that point up a floor: " + ", ".join(f"{a} -> {b}" for a, b in new)


def test_known_exceptions_are_still_needed():
    fixed = sorted(set(KNOWN) - upward_imports())
    assert not fixed, f"remove these from KNOWN, they are fixed: {fixed}"


def test_docs_name_every_floor():
    text = (SRC.parents[1] / "docs" / "architecture.md").read_text()
    missing = [u for u in FLOORS if u not in ("leannet", "__main__", "jobs", "checkpoint")
               and f"`{u}" not in text]
    assert not missing, f"docs/architecture.md does not place {missing}"
