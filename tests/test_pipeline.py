"""The real `dvc repro` of download and train, in a temporary copy of the project."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prunelab import load_model
from prunelab.data import load_test
from prunelab.training import evaluate

from helpers import copy_project, run, small_params


@pytest.mark.slow
def test_dvc_repro_download_and_train(tmp_path: Path, mirror: Path) -> None:
    proj = copy_project(tmp_path, small_params(mirror))
    run(["dvc", "repro", "train"], proj)

    metrics = json.loads((proj / "metrics/baseline.json").read_text())
    assert metrics["test_accuracy"] > 0.85 and metrics["parameters"] == 101_770
    # The saved file reproduces the metrics exactly (the audit path: prunelab.load_model).
    model = load_model(proj / "models/baseline/model.safetensors")
    test = load_test(proj / "data", limit=1000)
    assert evaluate(model, test)[1] == metrics["test_accuracy"]

    again = run(["dvc", "repro", "train"], proj)
    assert "didn't change, skipping" in again.stdout and "Running stage" not in again.stdout
    shown = run(["dvc", "metrics", "show", "--json"], proj).stdout
    assert json.loads(shown)[""]["data"]["metrics/baseline.json"]["data"]["test_accuracy"] == (
        metrics["test_accuracy"]
    )

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{proj / 'mlflow.db'}")
    exp = client.get_experiment_by_name("mlp")
    (found,) = client.search_runs([exp.experiment_id])
    assert found.data.metrics["test_accuracy"] == metrics["test_accuracy"]
    assert len(client.get_metric_history(found.info.run_id, "val_accuracy")) == 3
    assert client.search_logged_models([exp.experiment_id])  # mlflow.pytorch.log_model ran


def test_stage_stops_on_bad_params_before_any_work(tmp_path: Path, mirror: Path) -> None:
    params = small_params(mirror)
    params["train"]["lr"] = -1
    proj = copy_project(tmp_path, params)
    proc = run(["prunelab", "download"], proj, _EXPECT_FAIL="1")
    assert proc.returncode == 2 and "train.lr" in proc.stderr and "greater than 0" in proc.stderr
    assert not (proj / "data").exists()
