"""DVC experiments on the real pipeline (a slice): `dvc exp show` and `dvc metrics diff` see
our metrics, and a `--temp` experiment's MLflow runs land in the project's own store."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from helpers import copy_project, run, small_params

GIT_ID = {f"GIT_{who}_{what}": value for who in ("AUTHOR", "COMMITTER")
          for what, value in (("NAME", "prunelab tests"), ("EMAIL", "tests@localhost"))}


@pytest.fixture(scope="module")
def committed(tmp_path_factory: pytest.TempPathFactory, mirror: Path) -> Path:
    """One method on a slice, reproduced and committed (metrics included) as a user would."""
    params = small_params(mirror, **{"prune.methods": ["magnitude"],
                                     "prune.granularities": ["weight"],
                                     "prune.calibration_batches": 2, "finetune.epochs": 2,
                                     "search.trials": 2, "search.refine": 0,
                                     "sweep.ratios": [4], "sweep.seeds": [0, 1],
                                     "oracle.weights_per_layer": 50})
    proj = copy_project(tmp_path_factory.mktemp("exp"), params)
    run(["dvc", "repro"], proj)
    run(["git", "add", "-A"], proj)
    run(["git", "commit", "-qm", "baseline"], proj, **GIT_ID)
    assert run(["git", "status", "--porcelain"], proj).stdout == ""  # every output accounted
    return proj


@pytest.mark.slow
def test_an_experiment_shows_its_headline_metrics_and_diffs_against_head(committed: Path) -> None:
    run(["dvc", "exp", "run", "-n", "ft1", "-S", "finetune.epochs=1"], committed, **GIT_ID)
    shown = json.loads(run(["dvc", "exp", "show", "--json"], committed).stdout)
    exps = [e for rev in shown for e in (rev.get("experiments") or [])]
    (ft1,) = [e for e in exps if e.get("name") == "ft1"]
    data = ft1["revs"][0]["data"]
    shown_metrics = data["metrics"]["reports/metrics/magnitude-weight.json"]["data"]
    assert 0.5 < shown_metrics["acc"] <= 1
    assert data["params"]["params.yaml"]["data"]["finetune"]["epochs"] == 1
    diff = json.loads(run(["dvc", "metrics", "diff", "HEAD", "ft1", "--all", "--json"],
                          committed).stdout)
    moved = diff["reports/metrics/magnitude-weight.json"]
    assert moved["acc"]["old"] is not None and moved["acc"]["new"] is not None
    table = run(["dvc", "metrics", "diff", "HEAD", "ft1"], committed).stdout.splitlines()
    assert max(map(len, table)) <= 100, "\n".join(table)


@pytest.mark.slow
def test_a_temp_experiment_logs_to_the_project_s_mlflow_store(committed: Path) -> None:
    from mlflow.tracking import MlflowClient

    run(["dvc", "exp", "run", "--temp", "-n", "tmp1", "-S", "finetune.lr=0.02"], committed,
        **GIT_ID)
    client = MlflowClient(f"sqlite:///{committed / 'mlflow.db'}")
    exp = client.get_experiment_by_name("mlp")
    runs = client.search_runs([exp.experiment_id], "tags.`dvc.exp_name` = 'tmp1'")
    assert {r.data.tags["dvc.stage"] for r in runs} >= {"prune"}
    assert all(r.data.tags["git.commit"] for r in runs)
    (ft,) = [r for r in runs if r.data.tags["stage"] == "prune"]
    assert float(ft.data.params["finetune.lr"]) == 0.02


@pytest.mark.slow
def test_more_seeds_compute_only_the_new_seeds_points(committed: Path) -> None:
    """The sweep's points are keyed by seed (and its baseline's content), not its study:
    a third seed computes that seed's two points (magnitude's and its dense+ft control);
    the four earlier ones come from the study. (Runs last: the workspace keeps the
    earlier experiments' params.)"""
    out = run(["dvc", "exp", "run", "-n", "seeds3", "-S", "sweep.seeds=[0,1,2]"], committed,
              **GIT_ID).stdout
    assert re.search(r"sweep study \S+: 6 points, 2 to compute", out), out[-2000:]
    points = json.loads((committed / "sweep" / "magnitude-weight.json").read_text())["points"]
    assert sorted(p["seed"] for p in points) == [0, 1, 2]
