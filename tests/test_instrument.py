"""An instrument, not one study (issue 36): a criterion brought from outside, or one
built-in criterion edited, costs only its own work. On a small slice of real MNIST with real
DVC: the stages' own counts and MLflow say what was computed, and the default question's
numbers stay as they were.

The project runs the prunelab of its own copy of src/ (PYTHONPATH), so that a test can edit
a module without touching this checkout; the example package is installed with pip into a
folder on that path (`--target`), not into this venv, so no other test sees it.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from helpers import ROOT, copy_project, run, small_params

METHODS = ["magnitude", "taylor", "random"]
RATIOS, SEEDS = [2, 8], [0, 1]
MINE = "sqrt-taylor"


def test_the_example_criterion_by_hand() -> None:
    """sqrt-taylor on test_criteria's 2-3-2 network (its docstring works the gradients):
    mean |∂L/∂W1| = [[q/2, 0], [q/2, 0], [0, r]], |W1| = [[1, 2], [2, 0], [1, 3]], so
    s(W1) = [[√(q/2), 0], [2√(q/2), 0], [0, 3√r]]; a hidden unit's score is its row's sum;
    p = 1 is exactly taylor, p = 0 magnitude."""
    import math

    from prunelab.criteria import registry

    saved = dict(registry._REGISTRY)  # importing it registers it: not for the other tests
    sys.path.insert(0, str(ROOT / "examples" / "my_criterion"))
    try:
        from my_criterion import sqrt_taylor_scores, sqrt_taylor_unit_scores
    finally:
        sys.path.pop(0)
        registry._REGISTRY.clear()
        registry._REGISTRY.update(saved)
    from test_criteria import BATCHES, close, q, r, tiny_net

    from prunelab.criteria.first_order import taylor_scores
    from prunelab.criteria.magnitude_activity import magnitude_scores

    net = tiny_net()
    h = math.sqrt(q / 2)
    s = sqrt_taylor_scores(net, BATCHES)
    close(s["body.0.weight"], [[h, 0], [2 * h, 0], [0, 3 * math.sqrt(r)]])
    close(s["body.2.weight"], [[h, 0, math.sqrt(3 * r / 2)], [0, math.sqrt(q),
                                                             math.sqrt(3 * r / 2)]])
    (units,) = sqrt_taylor_unit_scores(net, BATCHES)
    close(units, [h, 2 * h, 3 * math.sqrt(r)])
    for name, t in taylor_scores(net, BATCHES).items():
        torch.testing.assert_close(sqrt_taylor_scores(net, BATCHES, power=1.0)[name], t)
    for name, m in magnitude_scores(net).items():
        torch.testing.assert_close(sqrt_taylor_scores(net, BATCHES, power=0.0)[name], m)


def test_a_new_param_or_check_moves_no_key_and_a_procedure_edit_moves_it(
        tmp_path: Path) -> None:
    """The params' schema and the methods' checks change numbers only through values the
    keys hash (`codedeps.VALUES_ONLY`): an edit to config.py or methods.py leaves the
    sweep's and a criterion's code digests as they were; an edit to training.py, which the
    sweep runs, moves the sweep's."""
    import shutil

    from prunelab import codedeps

    src = tmp_path / "src"
    shutil.copytree(ROOT / "src" / "prunelab", src / "prunelab")

    def digests() -> tuple[str, str]:
        return (codedeps.procedure_digest("prunelab.study.sweep", src),
                codedeps.criterion_digest("prunelab.criteria.first_order", src))

    before = digests()
    for name in ("config.py", "methods.py"):
        path = src / "prunelab" / name
        path.write_text(path.read_text() + "\n# a new param's comment\n")
        assert digests() == before, name
    path = src / "prunelab" / "training.py"
    path.write_text(path.read_text() + "\n# touched\n")
    assert digests()[0] != before[0] and digests()[1] == before[1]


def counts(out: str) -> dict[str, tuple[int, int]]:
    """(units, to compute) from each stage's opening line."""
    found = {}
    for stage, pattern in {
        "search": r"search: (\d+) studies, (\d+) to compute",
        "prune": r"prune: (\d+) method-granularities, (\d+) to compute",
        "sweep": r"sweep study \S+: (\d+) points, (\d+) to compute",
        "oracle": r"oracle: (\d+) seeds' truths, (\d+) to measure",
    }.items():
        if m := re.search(pattern, out):
            found[stage] = (int(m.group(1)), int(m.group(2)))
    return found


def runs_since(proj: Path, start_ms: int) -> list[Any]:
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{proj / 'mlflow.db'}")
    ids = [e.experiment_id for e in client.search_experiments()]
    return list(client.search_runs(ids, f"attributes.start_time > {start_ms}",
                                   max_results=5000))


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, mirror: Path) -> Path:
    params = small_params(mirror, **{"prune.methods": METHODS, "prune.calibration_batches": 4,
                                     "search.trials": 3, "search.refine": 1,
                                     "sweep.ratios": RATIOS, "sweep.seeds": SEEDS,
                                     "oracle.examples": 200, "oracle.weights_per_layer": 50})
    proj = copy_project(tmp_path_factory.mktemp("instrument"), params)
    target = proj / ".site"  # where the example package is installed, not this venv
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--target", str(target),
                    str(ROOT / "examples" / "my_criterion")], check=True, timeout=300)
    run(["dvc", "repro"], proj, PYTHONPATH=str(proj / "src"))
    return proj


def env(proj: Path) -> dict[str, str]:
    return {"PYTHONPATH": f"{proj / 'src'}:{proj / '.site'}"}


def headline(proj: Path) -> dict[str, Any]:
    out: dict[str, Any] = json.loads((proj / "reports/headline.json").read_text())
    return out


def test_an_outside_criterion_computes_only_its_own_work(project: Path) -> None:
    """Install the example, add it to prune.methods and to a question of its own,
    `dvc repro`: its 2 searches, its 2 prune tasks and its points, nothing else; the kept
    oracle truths scored again; the default question's numbers unchanged."""
    import time

    before = headline(project)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["prune"]["methods"].append(MINE)
    params["report"]["questions"].append({
        "name": "mine", "ask": "Does sqrt-taylor beat magnitude?", "criteria": [MINE],
        "references": ["magnitude"], "alpha": None, "equivalence_margin_pp": None})
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    plan = run(["prunelab", "plan"], project, **env(project)).stdout
    start = int(time.time() * 1000)
    out = run(["dvc", "repro"], project, **env(project)).stdout
    per_series = len(RATIOS) * len(SEEDS)
    n_pairs = 2 * (len(METHODS) + 1)
    assert counts(out) == {"search": (n_pairs, 2), "prune": (n_pairs, 2),
                           "sweep": (counts(out)["sweep"][0], 2 * per_series),
                           "oracle": (len(SEEDS), 0)}, out
    assert "Stage 'train' didn't change" in out
    assert f"sweep: {counts(out)['sweep'][0]} points, {2 * per_series} to compute" in plan
    assert f"search: {n_pairs} studies, 2 to compute" in plan
    assert "prune: " + f"{n_pairs} tasks, 2 to compute" in plan
    assert f"oracle: {len(SEEDS)} seeds' truths, 0 to measure" in plan
    # MLflow: every run since is the new criterion's (or the report's comparison run).
    new = runs_since(project, start)
    methods = {r.data.tags.get("method") for r in new if r.data.tags.get("stage") != "report"}
    assert methods == {MINE}, methods
    after = headline(project)
    assert after["questions"]["gradient"] == before["questions"]["gradient"]
    assert set(after["questions"]["mine"]) == {f"{g}/{MINE}-vs-magnitude"
                                               for g in ("weight", "neuron")}
    assert "## Question `mine`" in (project / "reports/report.md").read_text()
    # And again: nothing but the criteria manifest runs.
    again = run(["dvc", "repro"], project, **env(project)).stdout
    assert re.findall(r"Running stage '([^']+)'", again) == ["criteria"], again


def test_editing_one_builtin_criterion_recomputes_only_its_work(project: Path) -> None:
    """A comment appended to taylor's module (criteria/first_order.py, which also holds
    gradient and fisher, not run here) moves taylor's keys only."""
    import time

    module = project / "src/prunelab/criteria/first_order.py"
    module.write_text(module.read_text() + "\n# touched\n")
    start = int(time.time() * 1000)
    out = run(["dvc", "repro"], project, **env(project)).stdout
    found = counts(out)
    assert found["search"][1] == 2 and found["prune"][1] == 2, out
    assert found["sweep"][1] == 2 * len(RATIOS) * len(SEEDS), out
    assert found["oracle"][1] == 0, out
    methods = {r.data.tags.get("method") for r in runs_since(project, start)
               if r.data.tags.get("stage") != "report"}
    assert methods == {"taylor"}, methods


def test_the_oracle_s_measuring_time_is_in_mlflow_and_plan_estimates_from_it(
        project: Path) -> None:
    """The truths are DVC outputs and hold no timing; the oracle stage logs what measuring
    one took to MLflow (stage=oracle), and `prunelab plan`, with a truth missing, estimates
    from it."""
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    ids = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(ids, "tags.stage = 'oracle'")
    assert runs and all(r.data.metrics["truth_seconds"] > 0 for r in runs)
    truth = sorted((project / "models/truth").glob("*.safetensors"))[0]
    aside = truth.with_suffix(".aside")
    truth.rename(aside)
    try:
        plan = run(["prunelab", "plan"], project, **env(project)).stdout
    finally:
        aside.rename(truth)
    assert re.search(rf"oracle: {len(SEEDS)} seeds' truths, 1 to measure, 1 kept "
                     r"\(~\d+:\d\d:\d\d on 1 worker\(s\)\)", plan), plan
