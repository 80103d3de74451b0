"""`prunelab search`: run a method's Optuna study (`prunelab.search`) in local worker
processes, choose its sparsity, write the choice and log the study to MLflow."""

from __future__ import annotations

import multiprocessing
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from prunelab import search, tracking
from prunelab.config import Config, load_config
from prunelab.fileio import write_json
from prunelab.models import load_model, resolve_device
from prunelab.search import EPOCH_ATTR
from prunelab.settings import mask_url, train_val_splits


def _objective(cfg: Config, method: str, granularity: str, baseline: Path) -> search.Objective:
    """The trial function with data and baseline loaded (once per worker)."""
    train, val = train_val_splits(cfg)  # never the test split
    base = load_model(baseline, resolve_device(cfg.device))
    return search.objective(cfg, method, granularity, base, train, val)


def work(params: str, method: str, granularity: str, baseline: str, n_trials: int,
         parent_run_id: str, threads: int | None = None, worker: int = 0) -> None:
    """One worker: run `n_trials` trials of the shared study (entry point of each process),
    logging each to MLflow as it finishes."""
    import torch

    if threads:
        torch.set_num_threads(threads)  # workers on one machine share its cores
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cfg = load_config(params)
    tracking.configure(cfg.mlflow.tracking_uri)
    study = search.open_study(cfg, method, granularity, search.open_storage(cfg), worker)
    study.optimize(_objective(cfg, method, granularity, Path(baseline)), n_trials=n_trials,
                   catch=(), callbacks=[trial_logger(cfg, parent_run_id, method, granularity)])


def run(cfg: Config, params: Path, method: str, granularity: str, baseline: Path, out: Path,
        workers: int) -> None:
    # Both stores are checked before any work; the Optuna storage first, since a bad URL
    # there should cost seconds, not MLflow's start-up as well.
    storage = search.open_storage(cfg)
    tracking.configure(cfg.mlflow.tracking_uri)
    study = search.open_study(cfg, method, granularity, storage)
    search.reset_orphans(study, storage)
    parent = parent_run(cfg, study, method, granularity)
    todo = search.remaining_trials(study, cfg.search.trials)
    shares = [todo // workers + (i < todo % workers) for i in range(workers)]
    shares = [n for n in shares if n > 0]
    threads = max(1, (os.cpu_count() or 1) // workers)
    if len(shares) == 1:
        work(str(params), method, granularity, str(baseline), shares[0], parent)
    elif shares:
        ctx = multiprocessing.get_context("spawn")
        procs = [ctx.Process(target=work, args=(str(params), method, granularity,
                                                str(baseline), n, parent, threads, i))
                 for i, n in enumerate(shares)]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join()
        if any(proc.exitcode != 0 for proc in procs):
            codes = [p.exitcode for p in procs]
            raise RuntimeError(f"a search worker failed (exit codes {codes}); run the same "
                               "command again to resume the study")
    study = search.open_study(cfg, method, granularity, storage)
    if cfg.search.refine and cfg.search.finetune_lr is None:
        search.refine(study, _objective(cfg, method, granularity, baseline), cfg.search.refine,
                      callbacks=[trial_logger(cfg, parent, method, granularity)])
    choice = search.choose(study, cfg.search.max_accuracy_drop)
    url = search.storage_url(cfg)
    choice["storage"] = mask_url(url) if url else str(search.JOURNAL)  # never a password
    log_choice(parent, study, choice)
    write_json(out, choice)
    print(f"{method}-{granularity}: chose sparsity {choice['sparsity']:.4f} "
          f"(val {choice['val_accuracy']:.4f}) from {choice['trials_complete']} trials "
          f"of study {study.study_name}")


def _tags(method: str, granularity: str) -> dict[str, str]:
    return {"stage": "search", "method": method, "granularity": granularity}


def parent_run(cfg: Config, study: optuna.Study, method: str, granularity: str) -> str:
    """The study's MLflow run, created before its first trial; a rerun of the same study
    (resumed, or already complete) finds it by its tag instead of adding another."""
    import mlflow

    experiment = mlflow.set_experiment(f"{cfg.model}-search")
    found = mlflow.search_runs([experiment.experiment_id], output_format="list",
                               filter_string=f"tags.`optuna.study` = '{study.study_name}'")
    if found:
        return found[0].info.run_id
    params = {"method": method, "granularity": granularity, "study": study.study_name,
              "trials": cfg.search.trials, "max_accuracy_drop": cfg.search.max_accuracy_drop}
    tags = {**_tags(method, granularity), "optuna.study": study.study_name}
    with tracking.stage_run(experiment.name, study.study_name, tags, params) as run:
        tracking.log_mnist(cfg.data.root)
        return run.info.run_id


def trial_logger(cfg: Config, parent_run_id: str, method: str,
                 granularity: str) -> Callable[[optuna.Study, FrozenTrial], None]:
    """An Optuna callback: each finished trial becomes a run nested under the study's, its
    val accuracy logged per fine-tuning epoch (step 0 = right after pruning)."""
    import mlflow

    experiment = f"{cfg.model}-search"

    def log(study: optuna.Study, trial: FrozenTrial) -> None:
        mlflow.set_experiment(experiment)
        tags = {**_tags(method, granularity), "state": trial.state.name}
        with tracking.stage_run(experiment, f"trial-{trial.number}", tags,
                                {**trial.params, "trial": trial.number}, nested=True,
                                parent_run_id=parent_run_id):
            for key, value in trial.user_attrs.items():
                if key.startswith(EPOCH_ATTR):
                    mlflow.log_metric("val_accuracy", value, step=int(key[len(EPOCH_ATTR):]))
                elif isinstance(value, float) and key != "constraint":
                    mlflow.log_metric(key, value)
            if trial.values:
                mlflow.log_metric("sparsity", trial.values[1])

    return log


def log_choice(parent_run_id: str, study: optuna.Study, choice: dict[str, Any]) -> None:
    """The choice and Optuna's plots, on the study's run."""
    import matplotlib

    matplotlib.use("Agg")
    import mlflow
    from optuna.visualization import matplotlib as vis

    with mlflow.start_run(run_id=parent_run_id):
        mlflow.log_params({"chosen_sparsity": choice["sparsity"],
                           "chosen_trial": choice["trial"]})
        mlflow.log_metrics({"chosen_val_accuracy": choice["val_accuracy"],
                            "chosen_realised_sparsity": choice["realised_sparsity"]})
        plots = {
            "pareto_front.png": lambda: vis.plot_pareto_front(study),
            "history_val_accuracy.png": lambda: vis.plot_optimization_history(
                study, target=lambda t: t.values[0], target_name="val_accuracy"),
            "param_importances.png": lambda: vis.plot_param_importances(
                study, target=lambda t: t.values[0], target_name="val_accuracy"),
        }
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for name, plot in plots.items():
                try:
                    mlflow.log_figure(plot().figure, name)
                except (ValueError, RuntimeError) as exc:  # e.g. importances need 2+ trials
                    print(f"skipped {name}: {exc}")
