"""The real `dvc repro`, end to end on a slice of MNIST, in a temporary copy of the project.

One repro (module fixture) serves several tests: each inspects a different promise.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from prunelab import load_model
from prunelab.data import load_test
from prunelab.training import evaluate

from helpers import copy_project, run, small_params

METHODS = ["magnitude", "random"]
GRANULARITIES = ["weight", "neuron"]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, mirror: Path) -> Path:
    params = small_params(mirror, **{"prune.methods": METHODS,
                                     "prune.granularities": GRANULARITIES,
                                     "prune.calibration_batches": 4, "finetune.epochs": 1,
                                     "search.trials": 3, "search.epochs": 1})
    proj = copy_project(tmp_path_factory.mktemp("proj"), params)
    run(["dvc", "repro"], proj)
    return proj


def metrics(proj: Path, name: str) -> dict:
    return json.loads((proj / "metrics" / name).read_text())


@pytest.mark.slow
def test_baseline_metrics_match_the_saved_model(project: Path) -> None:
    m = metrics(project, "baseline.json")
    assert m["test_accuracy"] > 0.85 and m["parameters"] == 101_770
    # The audit path: prunelab.load_model on the file reproduces the metric exactly.
    model = load_model(project / "models/baseline/model.safetensors")
    assert evaluate(model, load_test(project / "data", limit=1000))[1] == m["test_accuracy"]


@pytest.mark.slow
def test_second_repro_changes_nothing_and_metrics_show(project: Path) -> None:
    again = run(["dvc", "repro"], project)
    assert "Running stage" not in again.stdout, again.stdout
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], project).stdout)
    files = shown[""]["data"]
    assert files["metrics/baseline.json"]["data"]["test_accuracy"] == (
        metrics(project, "baseline.json")["test_accuracy"])
    assert len(files) == 1 + 3 * len(METHODS) * len(GRANULARITIES)  # baseline, search, prune, ft


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("granularity", GRANULARITIES)
def test_saved_pruned_models_are_what_their_metrics_claim(
    project: Path, method: str, granularity: str
) -> None:
    name = f"{method}-{granularity}"
    m = metrics(project, f"finetune/{name}.json")
    choice = json.loads((project / f"search/{name}.json").read_text())
    chosen = choice["sparsity"]
    assert m["target_sparsity"] == chosen  # prune used the searched sparsity
    # ... and finetune repeated the chosen trial exactly (same masks, same seed).
    assert m["val_accuracy"] == choice["val_accuracy"]
    model = load_model(project / f"models/{name}/finetuned.safetensors")
    weights = [mod.weight for mod in model.body if hasattr(mod, "weight")]
    if granularity == "weight":
        # Count the zeros of the loaded file: the cut weights stayed exactly 0.0.
        prunable = weights[:-1]
        zeros = sum(int((w == 0).sum()) for w in prunable)
        assert zeros / sum(w.numel() for w in prunable) == pytest.approx(m["sparsity"])
        assert m["sparsity"] == pytest.approx(chosen, abs=1 / (784 * 128))
        mask = load_file(str(project / f"models/{name}/mask.safetensors"))
        for key, keep in mask.items():
            w = model.get_submodule(key.rsplit(".", 1)[0]).weight
            assert (w[keep == 0] == 0).all()
    else:
        # A smaller dense model: the cut hidden units are gone for real.
        kept = 128 - round(chosen * 128)
        assert model.spec.widths == (kept,)
        assert weights[0].shape == (kept, 784) and weights[1].shape == (10, kept)
    assert sum(int(p.count_nonzero()) for p in model.parameters()) == m["parameters_remaining"]
    test = load_test(project / "data", limit=1000)
    assert evaluate(model, test)[1] == m["test_accuracy"]
    assert m["effective_flops"] < m["dense_flops"]


@pytest.mark.slow
def test_each_pruned_run_is_in_mlflow_with_mask_and_model(project: Path) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    exp = client.get_experiment_by_name("mlp")
    runs = client.search_runs([exp.experiment_id], "tags.stage = 'finetune'")
    assert sorted(r.info.run_name for r in runs) == sorted(
        f"{m}-{g}" for m in METHODS for g in GRANULARITIES)
    for r in runs:
        name = r.info.run_name
        assert r.data.metrics["test_accuracy"] == metrics(project, f"finetune/{name}.json")[
            "test_accuracy"]
        assert r.data.params["method"] == name.split("-")[0]
        assert "mask.safetensors" in [a.path for a in client.list_artifacts(r.info.run_id)]
    (baseline,) = client.search_runs([exp.experiment_id], "tags.stage = 'train'")
    assert len(client.get_metric_history(baseline.info.run_id, "val_accuracy")) == 3
    assert len(client.search_logged_models([exp.experiment_id])) == 1 + len(runs)


def test_stage_stops_on_bad_params_before_any_work(tmp_path: Path, mirror: Path) -> None:
    params = small_params(mirror)
    params["train"]["lr"] = -1
    proj = copy_project(tmp_path, params)
    proc = run(["prunelab", "download"], proj, _EXPECT_FAIL="1")
    assert proc.returncode == 2 and "train.lr" in proc.stderr and "greater than 0" in proc.stderr
    assert not (proj / "data").exists()
