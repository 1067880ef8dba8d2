"""The layers import one way: core <- rewards <- tasks <- checkpoints_index <- inference <- rl <- moelab;
inside inference, its rooms too (jobs <- generation <- ttc <- sweep | instruments <- toy | deficit).

The contract lives in pyproject.toml (`[tool.importlinter]`) and is checked by import-linter's own
command, so `lint-imports` by hand and this test agree. Imports inside functions count: grimp, the
graph import-linter builds, reads every import statement of a module, not only the top-level ones.
"""

import graphlib
import subprocess
import sys
import tomllib
from itertools import combinations
from pathlib import Path

import grimp

REPO = Path(__file__).resolve().parents[1]
LAYERS = ["moelab", "rl", "inference", "checkpoints_index", "tasks", "rewards", "core"]


def test_the_import_contracts_are_kept():
    """Every contract in pyproject.toml: the layers, the rooms of inference/ and no circle between siblings."""
    contracts = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    assert {c["name"] for c in contracts} >= {"one-way layers", "inference rooms", "no circle between siblings"}
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint)], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0 and f"{len(contracts)} kept, 0 broken" in result.stdout, result.stdout[-3000:]


def test_no_cycle_between_top_level_packages_counting_function_level_imports():
    graph = grimp.build_graph(*LAYERS)
    # `moelab.members` imports `rl.launch` only inside a function: the graph must see such imports.
    assert graph.direct_import_exists(importer="moelab.members", imported="rl.launch")
    cycles = [(a, b) for a, b in combinations(LAYERS, 2)
              if graph.direct_import_exists(importer=a, imported=b, as_packages=True)
              and graph.direct_import_exists(importer=b, imported=a, as_packages=True)]
    assert cycles == []
    upward = [(low, high) for i, high in enumerate(LAYERS) for low in LAYERS[i + 1:]
              if graph.direct_import_exists(importer=low, imported=high, as_packages=True)]
    assert upward == []


def test_no_import_circle_between_any_two_modules():
    """Inside a layer too: no module reaches itself through imports (function-level ones included), so
    every module can be read, tested and moved knowing only what is below it. `graphlib` names the circle."""
    graph = grimp.build_graph(*LAYERS)
    sorter = graphlib.TopologicalSorter({m: graph.find_modules_directly_imported_by(m) for m in graph.modules})
    try:
        sorter.prepare()
    except graphlib.CycleError as err:
        raise AssertionError(f"import circle: {' -> '.join(err.args[1])}") from None
