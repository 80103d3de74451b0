"""`prunelab search`: run a method's Optuna study (`prunelab.search`) in local worker
processes, choose its sparsity, write the choice and log the study to MLflow."""

from __future__ import annotations

import multiprocessing
import os
import warnings
from pathlib import Path
from typing import Any

import optuna

from prunelab import search, tracking
from prunelab.config import Config, load_config
from prunelab.fileio import write_json
from prunelab.models import load_model, resolve_device
from prunelab.settings import train_val_splits


def _objective(cfg: Config, method: str, granularity: str, baseline: Path) -> search.Objective:
    """The trial function with data and baseline loaded (once per worker)."""
    train, val = train_val_splits(cfg)  # never the test split
    base = load_model(baseline, resolve_device(cfg.device))
    return search.objective(cfg, method, granularity, base, train, val)


def work(params: str, method: str, granularity: str, baseline: str, n_trials: int,
         threads: int | None = None, worker: int = 0) -> None:
    """One worker: run `n_trials` trials of the shared study (entry point of each process)."""
    import torch

    if threads:
        torch.set_num_threads(threads)  # workers on one machine share its cores
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cfg = load_config(params)
    study = search.open_study(cfg, method, granularity, search.open_storage(cfg), worker)
    study.optimize(_objective(cfg, method, granularity, Path(baseline)), n_trials=n_trials,
                   catch=())


def run(cfg: Config, params: Path, method: str, granularity: str, baseline: Path, out: Path,
        workers: int) -> None:
    tracking.configure(cfg.mlflow.tracking_uri)  # before any work: fail fast if unreachable
    storage = search.open_storage(cfg)
    study = search.open_study(cfg, method, granularity, storage)
    search.reset_orphans(study, storage)
    todo = search.remaining_trials(study, cfg.search.trials)
    shares = [todo // workers + (i < todo % workers) for i in range(workers)]
    shares = [n for n in shares if n > 0]
    threads = max(1, (os.cpu_count() or 1) // workers)
    if len(shares) == 1:
        work(str(params), method, granularity, str(baseline), shares[0])
    elif shares:
        ctx = multiprocessing.get_context("spawn")
        procs = [ctx.Process(target=work, args=(str(params), method, granularity,
                                                str(baseline), n, threads, i))
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
        search.refine(study, _objective(cfg, method, granularity, baseline), cfg.search.refine)
    choice = search.choose(study, cfg.search.max_accuracy_drop)
    choice["storage"] = search.storage_url(cfg) or str(search.JOURNAL)
    log_study(cfg, study, choice, method, granularity)
    write_json(out, choice)
    print(f"{method}-{granularity}: chose sparsity {choice['sparsity']:.4f} "
          f"(val {choice['val_accuracy']:.4f}) from {choice['trials_complete']} trials "
          f"of study {study.study_name}")


def log_study(cfg: Config, study: optuna.Study, choice: dict[str, Any], method: str,
              granularity: str) -> None:
    """A parent MLflow run per study, a nested run per trial, and Optuna's plots."""
    import matplotlib

    matplotlib.use("Agg")
    import mlflow
    from optuna.visualization import matplotlib as vis

    tags = {"stage": "search", "method": method, "granularity": granularity}
    params = {"method": method, "granularity": granularity, "study": study.study_name,
              "trials": cfg.search.trials, "max_accuracy_drop": cfg.search.max_accuracy_drop,
              "chosen_sparsity": choice["sparsity"], "chosen_trial": choice["trial"]}
    with tracking.stage_run(f"{cfg.model}-search", study.study_name, tags, params):
        mlflow.log_metrics({"chosen_val_accuracy": choice["val_accuracy"],
                            "chosen_realised_sparsity": choice["realised_sparsity"]})
        for t in study.get_trials(deepcopy=False):
            with tracking.stage_run("", f"trial-{t.number}", {**tags, "state": t.state.name},
                                    {**t.params, "trial": t.number}, nested=True):
                metrics = {k: v for k, v in t.user_attrs.items() if isinstance(v, float)}
                if t.values:
                    metrics.update(val_accuracy=t.values[0], sparsity=t.values[1])
                mlflow.log_metrics(metrics)
        names = ["val_accuracy", "sparsity"]
        plots = {
            "pareto_front.png": lambda: vis.plot_pareto_front(study, target_names=names),
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
