"""The package's layers hold, and what a study depends on is read from the code.

Layers: the library (every module outside `stages/` and `cli`) never imports a stage or the
CLI; only the MLflow wiring (`tracking`, `model_registry`) and the stages speak MLflow; the
pruning core never reads params (`settings`); the import graph has no cycle.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from prunelab.codedeps import SRC, closure, imported, module_file

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = SRC / "prunelab"
MODULES = sorted("prunelab." + ".".join(p.relative_to(PACKAGE).with_suffix("").parts)
                 .removesuffix(".__init__").rstrip(".")
                 for p in PACKAGE.rglob("*.py"))
MLFLOW_WIRING = {"prunelab.tracking", "prunelab.model_registry"}  # what the stages call
LIBRARY = [m for m in MODULES if not m.startswith(("prunelab.stages", "prunelab.cli"))
           and m != "prunelab.__main__"]


def edges(m: str) -> set[str]:
    """What `m` imports, without the packages every module sits in (`prunelab` itself)."""
    return {i for i in imported(m) if module_file(i).name != "__init__.py"}


def third_party(m: str) -> set[str]:
    tree = ast.parse(module_file(m).read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    return {n.split(".")[0] for n in names}


def test_the_import_graph_has_no_cycle() -> None:
    state: dict[str, str] = {}

    def visit(m: str, path: list[str]) -> None:
        if state.get(m) == "done":
            return
        assert state.get(m) != "open", f"import cycle: {' -> '.join([*path, m])}"
        state[m] = "open"
        for i in sorted(edges(m)):
            visit(i, [*path, m])
        state[m] = "done"

    for m in MODULES:
        visit(m, [])


@pytest.mark.parametrize("module", LIBRARY)
def test_the_library_never_imports_a_stage_or_mlflow(module: str) -> None:
    upward = sorted(i for i in edges(module) if i.startswith(("prunelab.stages", "prunelab.cli")))
    assert not upward, f"{module} imports {upward}: the library must not know its stages"
    if module not in MLFLOW_WIRING:
        assert "mlflow" not in third_party(module), f"{module} speaks MLflow"
        assert not MLFLOW_WIRING & edges(module), f"{module} imports the MLflow wiring"


@pytest.mark.parametrize("core", ["prunelab.pruning", "prunelab.metrics", "prunelab.sweep",
                                  "prunelab.criteria", "prunelab.masks"])
def test_the_pruning_core_never_reads_params(core: str) -> None:
    assert "prunelab.settings" not in closure(core), f"{core} imports settings"


_TOUCH = r"""
import json, sys
from pathlib import Path
from prunelab.config import load_config
entry = sys.argv[2]
__import__(entry)
import prunelab
assert Path(prunelab.__file__).is_relative_to(sys.argv[3]), prunelab.__file__
cfg = load_config(sys.argv[1])
if entry == "prunelab.search":
    from prunelab.search import study_name
    name = lambda: study_name(cfg, "magnitude", "neuron")
else:
    from prunelab.sweep import study_name
    name = lambda: study_name(cfg)
before, changed = name(), {}
# Every prunelab module loaded by importing the entry: what its trials can run.
for mod in sorted(m for m in sys.modules if m.split(".")[0] == "prunelab"):
    path = Path(sys.modules[mod].__file__)
    text = path.read_text()
    path.write_text(text + "\n# touched\n")
    changed[str(path.relative_to(sys.argv[3]))] = name() != before
    path.write_text(text)
print(json.dumps(changed))
"""


@pytest.mark.parametrize("entry", ["prunelab.search", "prunelab.sweep"])
def test_touching_any_module_a_trial_imports_renames_the_study(
    tmp_path: Path, entry: str
) -> None:
    """A study whose code changed must not hand back its old trials: every prunelab module
    loaded with the search (or the sweep) is part of its study's name. Found loaded at run
    time, not from the import graph that names the study. (A hand-written list missed
    unit_criteria.py: an edited neuron criterion kept its stale search results.)"""
    copy = tmp_path / "src"
    shutil.copytree(PACKAGE, copy / "prunelab",
                    ignore=shutil.ignore_patterns("__pycache__"))
    env = {**os.environ, "PYTHONPATH": str(copy)}
    proc = subprocess.run([sys.executable, "-c", _TOUCH, str(ROOT / "params.yaml"), entry,
                           str(copy)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    changed = json.loads(proc.stdout)
    assert {"prunelab/criteria/first_order.py", "prunelab/criteria/second_order.py",
            "prunelab/criteria/magnitude_activity.py"} <= set(changed)
    assert [f for f, moved in changed.items() if not moved] == []


def test_every_stage_command_is_called_and_has_its_module() -> None:
    import argparse

    from prunelab.cli import STAGE_CALLS, build_parser

    (sub,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    stages = {p.stem for p in (PACKAGE / "stages").glob("*.py")} - {"__init__"}
    assert set(sub.choices) == set(STAGE_CALLS) == stages
