"""MLflow logging from processes that start together, as a stage's workers do."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path


def _log_a_run(uri: str, data_root: str, start_at: float) -> tuple[str, int]:
    import mlflow

    from prunelab.data import mnist_digest
    from prunelab.plumbing import tracking

    mlflow.set_tracking_uri(uri)
    while time.time() < start_at:  # all at once, to meet in the store's check-then-insert
        pass
    with tracking.stage_run("mlp", "worker", {"stage": "test"}) as run:
        tracking.log_mnist(data_root, mnist_digest())
    got = mlflow.get_run(run.info.run_id)
    return got.info.experiment_id, len(got.inputs.dataset_inputs)


def test_workers_starting_together_log_to_one_experiment_with_the_dataset(
    tmp_path: Path
) -> None:
    """Four processes make the experiment and its dataset row on a new SQLite store at the
    same instant: each run lands in the named experiment (not Default) with MNIST linked.
    With `mlflow.set_experiment` and a bare `log_input` one process in a few lost a race."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    MlflowClient(uri).search_experiments(max_results=1)  # the store made, as `configure` does
    spawn = multiprocessing.get_context("spawn")
    with spawn.Pool(4) as pool:
        start_at = time.time() + 8  # after the four have imported MLflow
        got = pool.starmap(_log_a_run, [(uri, str(tmp_path / "data"), start_at)] * 4)
    experiment = MlflowClient(uri).get_experiment_by_name("mlp").experiment_id
    assert got == [(experiment, 1)] * 4
    # The UI opens it on its runs ("Model training"), not on the GenAI traces overview.
    assert MlflowClient(uri).get_experiment(experiment).tags["mlflow.experimentKind"] == \
        "custom_model_development"


def test_an_experiment_made_before_its_kind_was_tagged_gets_the_tag(tmp_path: Path) -> None:
    import mlflow
    from mlflow.tracking import MlflowClient

    from prunelab.plumbing import tracking

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    before = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        made = MlflowClient(uri).create_experiment("mlp")  # as an earlier version did
        assert tracking.experiment_id("mlp") == made
        assert MlflowClient(uri).get_experiment(made).tags == tracking.MODEL_TRAINING
    finally:
        mlflow.set_tracking_uri(before)
