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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from prunelab import codedeps
from prunelab.codedeps import SRC, closure, imported, module_file

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = SRC / "prunelab"
MODULES = sorted("prunelab." + ".".join(p.relative_to(PACKAGE).with_suffix("").parts)
                 .removesuffix(".__init__").rstrip(".")
                 for p in PACKAGE.rglob("*.py"))
MLFLOW_WIRING = {"prunelab.plumbing.tracking", "prunelab.plumbing.model_registry"}
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


def every_edge(m: str) -> set[str]:
    """What `m` imports anywhere, type-only imports (`if TYPE_CHECKING:`) included."""
    tree = ast.parse(module_file(m).read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    for n in ast.walk(tree):
        if isinstance(n, ast.ImportFrom) and n.module:
            names |= {n.module} | {f"{n.module}.{a.name}" for a in n.names}
    return {i for i in names & set(MODULES) if module_file(i).name != "__init__.py"}


@pytest.mark.parametrize("graph", [edges, every_edge], ids=["run time", "with type-only"])
def test_the_import_graph_has_no_cycle(graph: Callable[[str], set[str]]) -> None:
    state: dict[str, str] = {}

    def visit(m: str, path: list[str]) -> None:
        if state.get(m) == "done":
            return
        assert state.get(m) != "open", f"import cycle: {' -> '.join([*path, m])}"
        state[m] = "open"
        for i in sorted(graph(m)):
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


# What each sub-package may import beside itself and the top-level modules (config, data,
# models, training, records, methods, keys, ...): a criterion knows nothing of pruning, the
# pruning nothing of studies or the oracle, when-to-prune (`when/`) only pruning and
# criteria, the analysis only records, and none of them the stages. The top level imports
# criteria, prune and plumbing, nothing above them.
LAYERS = {
    "plumbing": set(),
    "criteria": set(),
    "prune": {"criteria"},
    "oracle": {"prune", "criteria"},
    "study": {"prune", "criteria", "plumbing", "when"},
    "when": {"prune", "criteria"},
    "analysis": set(),
    "report": {"analysis", "oracle", "plumbing"},
    "top": {"criteria", "prune", "plumbing"},
}


def sub_package(m: str) -> str:
    parts = m.split(".")
    return parts[1] if len(parts) > 2 or (PACKAGE / parts[-1]).is_dir() else "top"


@pytest.mark.parametrize("module", [m for m in MODULES if m != "prunelab"
                                    and sub_package(m) in LAYERS])
def test_each_sub_package_imports_only_the_layers_below_it(module: str) -> None:
    mine = sub_package(module)
    above = sorted(i for i in edges(module) | every_edge(module)
                   if sub_package(i) not in LAYERS[mine] | {mine, "top"})
    assert not above, f"{module} ({mine}/) imports {above}: not a layer below it"


PLUMBING = [m for m in MODULES if m.startswith("prunelab.plumbing")]


@pytest.mark.parametrize("module", PLUMBING)
def test_plumbing_runs_no_code_that_computes(module: str) -> None:
    """The rule that lets the keys of the work leave the plumbing out (`codedeps`): a
    plumbing module imports, at run time, only other plumbing, `errors` and `config`
    (types only under TYPE_CHECKING), so no number can be computed through it."""
    allowed = ("prunelab.plumbing", "prunelab.errors", "prunelab.config")
    assert PLUMBING and not sorted(i for i in edges(module) if not i.startswith(allowed))


@pytest.mark.parametrize("core", ["prunelab.prune.procedure", "prunelab.metrics",
                                  "prunelab.study.sweep", "prunelab.criteria",
                                  "prunelab.prune.masks"])
def test_the_pruning_core_never_reads_params(core: str) -> None:
    assert "prunelab.settings" not in closure(core), f"{core} imports settings"


_TOUCH = r"""
import json, sys
from pathlib import Path
from prunelab.config import load_config
entry = sys.argv[2]
__import__(entry)
import prunelab
from prunelab import keys
from prunelab.criteria.registry import registered
assert Path(prunelab.__file__).is_relative_to(sys.argv[3]), prunelab.__file__
cfg = load_config(sys.argv[1])
registered()  # every criterion's module loaded, as a stage loads them
if entry == "prunelab.study.search":
    from prunelab.study.search import study_name
    stand_in = Path(sys.argv[3]) / "prunelab" / "__init__.py"  # for the baseline's bytes
    key = lambda: study_name(cfg, "magnitude", "neuron", stand_in)
else:
    from prunelab.study.sweep import points, study_name
    seeds = {s: Path(sys.argv[3]) / "prunelab" / "__init__.py" for s in cfg.sweep.seeds}
    key = lambda: (study_name(cfg), sorted(k for k, _, _ in points(cfg, seeds)))

def name():
    keys.procedure.cache_clear()  # cached per process: the sources do not change in a stage
    keys._criterion_code.cache_clear()
    return key()

before, changed = name(), {}
# Every prunelab module loaded: what a trial or point can run, and the plumbing beside it.
for mod in sorted(m for m in sys.modules if m.split(".")[0] == "prunelab"):
    path = Path(sys.modules[mod].__file__)
    if path.name == "__init__.py" and path.parent.name == "prunelab":
        continue  # its bytes name the baselines' stand-ins below
    text = path.read_text()
    path.write_text(text + "\n# touched\n")
    after = name()
    changed[str(path.relative_to(sys.argv[3]))] = (
        [after != before] if entry == "prunelab.study.search" else
        [after[0] != before[0], sorted({k.split("-r")[0] for k in set(after[1]) - set(before[1])})])
    path.write_text(text)
print(json.dumps(changed))
"""


def _touched(tmp_path: Path, entry: str) -> dict[str, list[Any]]:
    copy = tmp_path / "src"
    shutil.copytree(PACKAGE, copy / "prunelab",
                    ignore=shutil.ignore_patterns("__pycache__"))
    env = {**os.environ, "PYTHONPATH": str(copy)}
    proc = subprocess.run([sys.executable, "-c", _TOUCH, str(ROOT / "params.yaml"), entry,
                           str(copy)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out: dict[str, list[Any]] = json.loads(proc.stdout)
    return out


CRITERIA = "prunelab/criteria/"
OWN = {"first_order", "second_order", "magnitude_activity", "during_finetuning", "woodfisher"}
SHARED_CRITERIA = {"__init__", "base", "registry", "scoring"}  # what every criterion runs
# config.py and methods.py act only through values the keys hash (codedeps.VALUES_ONLY):
# their edits move no study and no point.
VALUES_ONLY = tuple(m.replace(".", "/") + ".py" for m in codedeps.VALUES_ONLY)


def test_touching_any_module_a_trial_runs_renames_its_study_and_only_its(
        tmp_path: Path) -> None:
    """A study whose code changed must not hand back its old trials: every prunelab module
    loaded with the search is part of its study's name (found loaded at run time, not from
    the import graph that names the study; a hand-written list once missed one), except
    the plumbing, which cannot change a number, and other criteria's modules: the
    magnitude study moves with magnitude_activity.py and with no other criterion's."""
    changed = _touched(tmp_path, "prunelab.study.search")
    assert {f"{CRITERIA}{m}.py" for m in OWN} <= set(changed)
    moved = {f for f, (m,) in changed.items() if m}
    expected = {f for f in changed if not f.startswith("prunelab/plumbing/")
                and f not in VALUES_ONLY
                and not (f.startswith(CRITERIA) and Path(f).stem in OWN - {"magnitude_activity"})}
    assert moved == expected


def test_touching_one_criterion_moves_only_its_sweep_points(tmp_path: Path) -> None:
    """The sweep's study is named by what every point shares; a criterion's module moves
    only the keys of its own points (and of every point that imports it: gmp's reads
    magnitude's code; the controls' and scratch's, random's)."""
    changed = _touched(tmp_path, "prunelab.study.sweep")
    study_moved = {f for f, (m, _) in changed.items() if m}
    assert study_moved == {f for f in changed if not f.startswith(("prunelab/plumbing/",
                                                                   CRITERIA))
                           and f not in VALUES_ONLY
                           } | {f"{CRITERIA}{m}.py" for m in SHARED_CRITERIA}
    series = {Path(f).stem: set(s) for f, (_, s) in changed.items()
              if f.startswith(CRITERIA) and Path(f).stem in OWN}
    assert series["first_order"] == {f"{m}-{g}" for m in ("gradient", "taylor", "fisher")
                                     for g in ("weight", "neuron")}
    assert series["second_order"] == {f"{m}-{g}" for m in ("obs", "obs-noupdate")
                                      for g in ("weight", "neuron")}
    assert series["during_finetuning"] == {f"{m}-{g}" for m in ("gmp", "movement")
                                           for g in ("weight", "neuron")}
    assert series["woodfisher"] == {"woodfisher-weight", "woodfisher-neuron"}
    assert {"magnitude-weight", "gmp-neuron", "random-weight", "scratch-neuron",
            "dense+ft-weight"} <= series["magnitude_activity"]
    assert not {"taylor-weight", "obs-neuron"} & series["magnitude_activity"]


def test_every_stage_command_is_called_and_has_its_module() -> None:
    import argparse

    from prunelab.cli import STAGE_CALLS, build_parser

    (sub,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    stages = {p.stem for p in (PACKAGE / "stages").glob("*.py")} - {"__init__"}
    assert set(sub.choices) == set(STAGE_CALLS) == stages
