"""MLflow wiring for the stage commands (the library modules never import MLflow).

The embedded default store is `sqlite:///mlflow.db` in the project root; the environment
variable MLFLOW_TRACKING_URI (e.g. http://host:5000) wins over params.yaml. The store is
checked before a stage does any work, with retries off, so an unreachable server costs
seconds and a message naming the URI rather than minutes of silent retries.
"""

from __future__ import annotations

import functools
import inspect
import os
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prunelab.errors import PrunelabError
from prunelab.plumbing.retry import StoreLost, retrying
from prunelab.plumbing.stores import mask_url, project_root

if TYPE_CHECKING:  # types only: plumbing imports no code that computes (tests/test_layers.py)
    from prunelab.config import MlflowConfig
    from prunelab.training import EpochResult


class TrackingError(PrunelabError, RuntimeError):
    """The MLflow tracking store cannot be reached."""


def configure(settings: MlflowConfig) -> str:
    """Point MLflow at the store to use, check it answers, and return its URI. From then on
    each call to the store rides out a lost connection for `settings.retry_s` (`_retried`)."""
    default_uri = settings.tracking_uri
    # Fail fast: MLflow's default is several retries with exponential back-off.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    import mlflow
    from mlflow.tracking import MlflowClient

    uri = os.environ.get("MLFLOW_TRACKING_URI") or _in_project(default_uri)
    mlflow.set_tracking_uri(uri)
    try:
        MlflowClient(uri).search_experiments(max_results=1)
    except Exception as exc:
        reason = str(exc).splitlines()[0] if str(exc) else ""
        raise TrackingError(
            f"cannot use the MLflow tracking store {mask_url(uri)!r}: "
            f"{type(exc).__name__}: {reason.replace(uri, mask_url(uri))} — start that "
            f"server, fix MLFLOW_TRACKING_URI, or unset it to use {default_uri!r}"
        ) from None
    _retried(MlflowClient(uri)._tracking_client.store, mask_url(uri), settings.retry_s)
    return uri


def _retried(store: Any, label: str, retry_s: float) -> None:
    """Make every public method of MLflow's tracking store (one cached instance per URI,
    shared by the fluent API and every MlflowClient in this process) retry while the
    store is unreachable. MLflow retries HTTP requests but not its database stores' calls,
    whose lost connection surfaces as "SQLAlchemy database error" and ends the stage.
    Runs are created by id-less calls, so a `create_run` whose commit landed before its
    answer was lost leaves one extra RUNNING run; the sweep's point runs are checked by
    their tags instead (`log_child_run`, `unfinished_runs`)."""
    import logging

    if getattr(store, "_prunelab_retried", False):
        return
    # MLflow logs each database error with its traceback before raising it, and psycopg
    # a warning for each pipeline it drops with a connection: the retry's one line says
    # it instead (PRUNELAB_DEBUG=1 keeps theirs).
    if not os.environ.get("PRUNELAB_DEBUG"):
        logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
        logging.getLogger("psycopg").setLevel(logging.ERROR)
    retries = _Retries(f"the tracking store at {label}", retry_s)
    for name in dir(type(store)):
        method = getattr(store, name)
        if not name.startswith("_") and callable(method) and inspect.ismethod(method):
            setattr(store, name, functools.partial(retries.call, method))
    store._prunelab_retried = True


class _Retries:
    """One tracking store's retries. Once it has been gone for its whole retry time, it
    stays given up for the process: the stage is ending, and what still calls it on the
    way out (a `with mlflow.start_run()` ending its run as FAILED, MLflow's exit handler)
    fails at once instead of waiting out the retry time again after the stage's last
    line."""

    def __init__(self, where: str, retry_s: float) -> None:
        self.where, self.retry_s = where, retry_s
        self.given_up: StoreLost | None = None

    def call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self.given_up is not None:
            raise StoreLost(str(self.given_up))
        try:
            return retrying(lambda: method(*args, **kwargs), self.where, self.retry_s)
        except StoreLost as exc:
            self.given_up = exc
            raise


def _in_project(uri: str) -> str:
    """sqlite:///mlflow.db (relative) -> the same file in the project root, wherever the
    stage runs (a `dvc exp run --temp` copy included)."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix):].startswith("/"):
        return prefix + str(project_root() / uri[len(prefix):])
    return uri


# MLflow 3's UI opens an experiment by its kind: this one (the UI's "Model training") on its
# runs. 3.17's UI lets its GenAI/Model-training switch (kept per browser, or the URL's
# ?workflowType=machine_learning) decide instead where the switch is on: README says so.
MODEL_TRAINING = {"mlflow.experimentKind": "custom_model_development"}


@functools.cache  # one stage process, one commit: asked once per run it logs
def provenance() -> dict[str, str]:
    """Tags that link a run to the DVC experiment, stage and Git commit that made it."""
    import subprocess

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], capture_output=True, text=True, timeout=10,
                                  check=True).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    commit = os.environ.get("DVC_EXP_BASELINE_REV") or git("rev-parse", "HEAD")
    tags = {"git.commit": commit,
            "git.dirty": str(bool(git("status", "--porcelain", "--untracked-files=no")))}
    for env, tag in (("DVC_EXP_NAME", "dvc.exp_name"), ("DVC_STAGE", "dvc.stage")):
        if os.environ.get(env):
            tags[tag] = os.environ[env]
    return tags


def experiment_id(name: str) -> str:
    """The id of the experiment `name`, created if it is missing. Not `mlflow.set_experiment`:
    when two processes (a stage's workers) create one experiment at once, the one that loses
    returns without making it active, and its runs go to the Default experiment, or fail on
    an MLFLOW_EXPERIMENT_ID inherited from the parent."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    found = client.get_experiment_by_name(name)
    if found is None:
        try:
            return client.create_experiment(name, tags=MODEL_TRAINING)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            found = client.get_experiment_by_name(name)  # the other process made it
            assert found is not None
    if any(found.tags.get(k) != v for k, v in MODEL_TRAINING.items()):  # made before the tag
        for k, v in MODEL_TRAINING.items():
            client.set_experiment_tag(found.experiment_id, k, v)
    return found.experiment_id


@contextmanager
def stage_run(experiment: str, run_name: str, tags: dict[str, str],
              params: dict[str, Any] | None = None, nested: bool = False,
              parent_run_id: str | None = None) -> Iterator[Any]:
    """An MLflow run of `experiment` with its tags (and provenance) and params, nested in
    the active run or under `parent_run_id`; `configure` first."""
    import mlflow

    with mlflow.start_run(experiment_id=experiment_id(experiment), run_name=run_name,
                          tags={**provenance(), **tags}, nested=nested,
                          parent_run_id=parent_run_id) as run:
        if params:
            mlflow.log_params(params)
        yield run


def runs_tagged(experiment: str, tag: str, value: str) -> list[Any]:
    """Every run of `experiment` whose tag `tag` is `value` (all pages of the search)."""
    from mlflow.tracking import MlflowClient

    client, out, token = MlflowClient(), [], None
    while True:
        page = client.search_runs([experiment_id(experiment)],
                                  f"tags.`{tag}` = '{value}'", max_results=1000,
                                  page_token=token)
        out += list(page)
        if not (token := page.token):
            return out


def delete_runs(runs: list[Any]) -> None:
    """Delete these runs (to MLflow's trash, as the UI's delete does)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    for r in runs:
        client.delete_run(r.info.run_id)


def log_mnist(root: str, digest: str) -> None:
    """The MNIST files as the run's dataset input, `digest` naming their content
    (`data.mnist_digest`: they are verified against the canonical MD5s before any stage
    reads them)."""
    import warnings

    import mlflow
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.exceptions import MlflowException

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MLflow warns that this source kind is "experimental"
        source = resolve_dataset_source(str((Path(root) / "MNIST" / "raw").resolve()))
        # MetaDataset's `profile` is abstract in MLflow's annotations but defined (None) in
        # its code: the class is meant to be used as it is (MLflow's docs do).
        dataset = MetaDataset(source=source, name="mnist", digest=digest)  # type: ignore[abstract]
        try:
            mlflow.log_input(dataset, context="training")
        except MlflowException as exc:
            # MLflow looks for the experiment's dataset row, then inserts it: two processes
            # logging it at once (a stage's workers) both insert, one hits the unique
            # constraint and its transaction is rolled back. The row exists now: link to it.
            if "unique constraint" not in str(exc).lower():
                raise
            mlflow.log_input(dataset, context="training")


def log_epoch(r: EpochResult) -> None:
    """One fit epoch's numbers, at step = epoch (an `on_epoch` callback of `fit`)."""
    import mlflow

    mlflow.log_metrics({"train_loss": r.train_loss, "val_loss": r.val_loss,
                        "val_accuracy": r.val_accuracy, "epoch_seconds": r.seconds,
                        "lr": r.lr}, step=r.epoch)


def log_child_run(parent_run_id: str, run_name: str, tags: dict[str, str],
                  params: dict[str, Any], record: dict[str, Any]) -> None:
    """A finished run nested under `parent_run_id`, with params and a record's numbers, in
    three store calls: the sweep logs hundreds of these."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    parent = client.get_run(parent_run_id)
    run = client.create_run(parent.info.experiment_id, run_name=run_name, tags={
        **provenance(), **tags, "mlflow.parentRunId": parent_run_id})
    now = int(time.time() * 1000)
    numbers = {k: float(v) for k, v in record.items()
               if isinstance(v, (int, float)) and not isinstance(v, bool)}
    numbers.update({f"layer_sparsity.{k}": v
                    for k, v in record.get("layer_sparsity", {}).items()})
    client.log_batch(run.info.run_id,
                     metrics=[Metric(k, v, now, 0) for k, v in numbers.items()],
                     params=[Param(k, str(v)) for k, v in params.items()],
                     tags=[RunTag("mlflow.runName", run_name)])
    client.set_terminated(run.info.run_id)


def log_record(record: dict[str, Any], skip: Collection[str] = ()) -> None:
    """A metrics record's numbers (and its per-layer sparsity) as MLflow metrics."""
    import mlflow

    mlflow.log_metrics({k: float(v) for k, v in record.items()
                        if isinstance(v, (int, float)) and k not in skip})
    mlflow.log_metrics({f"layer_sparsity.{k}": v
                        for k, v in record.get("layer_sparsity", {}).items()})


def flat_params(obj: Any, prefix: str = "") -> dict[str, Any]:
    """{"train.lr": 0.05, ...} from a nested pydantic dump, for mlflow.log_params."""
    out: dict[str, Any] = {}
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flat_params(value, f"{name}."))
        else:
            out[name] = value
    return out
