"""`prunelab search`: an Optuna study per (model, method, granularity) that picks the
sparsity to hand on to `prune`, judged on the validation split only.

Each trial prunes the baseline to a sampled target (density = 1 - sparsity, log-uniform),
fine-tunes as long as `finetune` will, and returns two
objectives: val accuracy and the sparsity it reached (a Pareto front). The choice is the
highest sparsity whose val accuracy is at most `search.max_accuracy_drop` below the
baseline's. Optuna's pruners do not support multi-objective studies (Trial.report raises),
so hopeless trials are stopped by a rule instead: after an epoch, a trial more than
`search.stop_margin` below the allowed accuracy ends as PRUNED.

Storage: a journal file in studies/ by default, or any Optuna RDB URL (PostgreSQL) shared
by `--workers N` local processes and by the same command on other machines. On an RDB a
heartbeat marks a killed worker's trial FAILED and it is retried. The journal file has no
heartbeat: there, a search that starts finds any RUNNING trial orphaned by a killed earlier
run and marks it FAILED (so run one `prunelab search` per study at a time on it).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import socket
import warnings
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.storages import JournalStorage, RDBStorage, RetryFailedTrialCallback
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from prunelab import tracking
from prunelab.config import Config, load_config
from prunelab.fileio import write_json
from prunelab.masks import prunable_names
from prunelab.metrics import pruning_metrics
from prunelab.models import load_model, resolve_device
from prunelab.pruning import calibration_batches, prune_once
from prunelab.stages.common import finetune_settings, prune_settings, train_val_splits
from prunelab.training import evaluate, make_optimizer, train_epoch

JOURNAL = Path("studies/optuna-journal.log")
DONE = (TrialState.COMPLETE, TrialState.PRUNED)


def storage_url(cfg: Config) -> str | None:
    return os.environ.get("PRUNELAB_OPTUNA_STORAGE") or cfg.optuna.storage


def open_storage(cfg: Config) -> optuna.storages.BaseStorage:
    url = storage_url(cfg)
    if not url:
        JOURNAL.parent.mkdir(parents=True, exist_ok=True)
        # Absolute, because Optuna's lock is a symlink to this path: a relative target
        # dangles (it resolves from studies/), so a lock left by a killed run is never
        # recognised as stale and the next search waits on it forever.
        return JournalStorage(JournalFileBackend(str(JOURNAL.resolve())))
    hb = cfg.optuna.heartbeat_s
    return RDBStorage(
        url, heartbeat_interval=hb, grace_period=2 * hb,
        failed_trial_callback=RetryFailedTrialCallback(max_retry=cfg.optuna.retries),
        engine_kwargs={"pool_pre_ping": True},
    )


# The code a trial runs: changing it, like changing params, must start a fresh study.
_TRIAL_CODE = ("criteria.py", "masks.py", "surgery.py", "pruning.py", "training.py",
               "stages/search.py")


def study_name(cfg: Config, method: str, granularity: str) -> str:
    """model-method-granularity plus a hash of everything a trial depends on (params and
    code), so that a changed setup starts a new study while an interrupted one resumes."""
    relevant = {k: cfg.model_dump()[k] for k in ("seed", "model", "data", "train", "prune",
                                                  "finetune", "search")}
    relevant["data"].pop("sources")
    relevant["search"].pop("workers")
    h = hashlib.sha1(json.dumps(relevant, sort_keys=True).encode())
    package = Path(__file__).resolve().parents[1]
    for name in _TRIAL_CODE:
        h.update((package / name).read_bytes())
    digest = h.hexdigest()[:8]
    return f"{cfg.model}-{method}-{granularity}-{digest}"


def _objective(cfg: Config, method: str, granularity: str,
               baseline: Path) -> Callable[[optuna.Trial], tuple[float, float]]:
    """Builds the trial function; data and baseline are loaded once per worker."""
    device = resolve_device(cfg.device)
    train, val = train_val_splits(cfg)  # never the test split
    base = load_model(baseline, device)
    base_val = evaluate(base, val, cfg.train.eval_batch_size)[1]
    floor = base_val - cfg.search.max_accuracy_drop
    p = cfg.prune
    calib = calibration_batches(train, p.calibration_batches, p.calibration_batch_size, p.seed)
    names = prunable_names(base, p.prune_output_layer)
    lo, hi = cfg.search.weight_sparsity if granularity == "weight" else cfg.search.neuron_sparsity

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        # Density (1 - sparsity) log-uniform: compression ratios 2x, 4x, 8x... get equal
        # room, so trials crowd where accuracy starts to fall, not at easy low sparsity.
        target = 1.0 - trial.suggest_float("density", 1.0 - hi, 1.0 - lo, log=True)
        trial.set_user_attr("sparsity", target)
        settings = finetune_settings(cfg)
        if cfg.search.finetune_lr is not None:
            lr = trial.suggest_float("lr", *cfg.search.finetune_lr, log=True)
            settings = replace(settings, lr=lr)
        s = replace(prune_settings(cfg, method, granularity), sparsity=target, threshold=None)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pruned = prune_once(base, calib, s)
        reached = pruning_metrics(pruned.model, base.spec, names)["sparsity"]
        trial.set_user_attr("weight_sparsity", reached)
        trial.set_user_attr("baseline_val_accuracy", base_val)
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        opt = make_optimizer(pruned.model, settings)
        # Recorded so that the finetune stage can repeat the chosen trial's fine-tuning.
        trial.set_user_attr("finetune_seed", cfg.seed + trial.number)
        g = torch.Generator().manual_seed(cfg.seed + trial.number)
        acc = evaluate(pruned.model, val, settings.eval_batch_size)[1]
        trial.set_user_attr("val_accuracy_epoch0", acc)
        for epoch in range(1, cfg.search.epochs + 1):
            train_epoch(pruned.model, train, opt, settings, g)
            acc = evaluate(pruned.model, val, settings.eval_batch_size)[1]
            trial.set_user_attr(f"val_accuracy_epoch{epoch}", acc)
            if epoch < cfg.search.epochs and acc < floor - cfg.search.stop_margin:
                raise optuna.TrialPruned(f"val accuracy {acc:.4f} after epoch {epoch}")
        # Feasible (<= 0) when within the allowed drop; TPE prefers feasible trials.
        trial.set_constraint("accuracy_drop_excess", floor - acc)
        trial.set_user_attr("constraint", floor - acc)
        return acc, reached

    return objective


def open_study(cfg: Config, method: str, granularity: str,
               storage: optuna.storages.BaseStorage | None = None, worker: int = 0) -> optuna.Study:
    # Each worker seeds its sampler differently, or they would all propose the same points.
    sampler = optuna.samplers.TPESampler(seed=cfg.search.seed + worker,
                                         n_startup_trials=min(5, cfg.search.trials))
    return optuna.create_study(
        study_name=study_name(cfg, method, granularity), storage=storage or open_storage(cfg),
        directions=["maximize", "maximize"], sampler=sampler, load_if_exists=True,
    )


def work(params: str, method: str, granularity: str, baseline: str, n_trials: int,
         threads: int | None = None, worker: int = 0) -> None:
    """One worker: run `n_trials` trials of the shared study (entry point of each process)."""
    import torch

    if threads:
        torch.set_num_threads(threads)  # workers on one machine share its cores
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cfg = load_config(params)
    study = open_study(cfg, method, granularity, worker=worker)
    study.optimize(_objective(cfg, method, granularity, Path(baseline)), n_trials=n_trials,
                   catch=())


def _reset_orphans(study: optuna.Study, storage: optuna.storages.BaseStorage) -> None:
    """Journal storage has no heartbeat: a RUNNING trial found at start-up was orphaned by a
    killed run. Fail it (and queue a retry, as the RDB heartbeat callback would)."""
    if isinstance(storage, RDBStorage):
        optuna.storages.fail_stale_trials(study)
        return
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        study.enqueue_trial(t.params, user_attrs={"retry_of": t.number})


def _bracket(study: optuna.Study) -> tuple[float, float] | None:
    """Densities of the sparsest feasible and the densest infeasible complete trial, when
    the infeasible one is sparser (the boundary lies between them)."""
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    ok = [t.params["density"] for t in done if t.user_attrs["constraint"] <= 1e-12]
    bad = [t.params["density"] for t in done if t.user_attrs["constraint"] > 1e-12]
    if not ok or not bad or max(bad) >= min(ok):
        return None
    return min(ok), max(bad)


def refine(study: optuna.Study, objective: Any, steps: int) -> None:
    """Bisect the accuracy-drop boundary: TPE spreads trials along the whole Pareto front,
    while the choice needs the front's edge. Refinement trials are ordinary trials of the
    study (user attr `refine`), so a resumed search runs only the missing ones."""
    done = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("refine")]
    for _ in range(steps - len(done)):
        bracket = _bracket(study)
        if bracket is None:
            return
        study.enqueue_trial({"density": (bracket[0] * bracket[1]) ** 0.5},
                            user_attrs={"refine": True})
        study.optimize(objective, n_trials=1, catch=())


def remaining_trials(study: optuna.Study, wanted: int) -> int:
    """Trials still to start: finished or running (on any machine) ones count as started;
    refinement trials come on top of `wanted`."""
    started = [t for t in study.get_trials(deepcopy=False, states=(*DONE, TrialState.RUNNING))
               if not t.user_attrs.get("refine")]
    return max(wanted - len(started), 0)


def choose(study: optuna.Study, max_drop: float) -> dict[str, Any]:
    """The highest-sparsity finished trial within the allowed val-accuracy drop."""
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not done:
        raise RuntimeError(f"study {study.study_name} has no complete trial to choose from")
    ok = [t for t in done if t.user_attrs["constraint"] <= 1e-12]
    if not ok:
        best = max(done, key=lambda t: t.values[0])
        warnings.warn(f"no trial of {study.study_name} stays within {max_drop} of the "
                      f"baseline's val accuracy; taking the most accurate (trial {best.number})",
                      stacklevel=2)
    else:
        best = max(ok, key=lambda t: (t.values[1], t.values[0]))
    return {
        "study": study.study_name, "trial": best.number,
        "sparsity": best.user_attrs["sparsity"], "lr": best.params.get("lr"),
        "finetune_seed": best.user_attrs["finetune_seed"],
        "val_accuracy": best.values[0], "weight_sparsity": best.values[1],
        "baseline_val_accuracy": best.user_attrs["baseline_val_accuracy"],
        "within_allowed_drop": bool(ok),
        "trials_complete": len(done),
        "trials_pruned": len(study.get_trials(deepcopy=False, states=(TrialState.PRUNED,))),
        "trials_failed": len(study.get_trials(deepcopy=False, states=(TrialState.FAIL,))),
    }


def run(cfg: Config, params: Path, method: str, granularity: str, baseline: Path, out: Path,
        workers: int) -> None:
    tracking.configure(cfg.mlflow.tracking_uri)  # before any work: fail fast if unreachable
    storage = open_storage(cfg)
    study = open_study(cfg, method, granularity, storage)
    _reset_orphans(study, storage)
    todo = remaining_trials(study, cfg.search.trials)
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
    study = open_study(cfg, method, granularity, storage)
    if cfg.search.refine and cfg.search.finetune_lr is None:
        refine(study, _objective(cfg, method, granularity, baseline), cfg.search.refine)
    choice = choose(study, cfg.search.max_accuracy_drop)
    choice["storage"] = storage_url(cfg) or str(JOURNAL)
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

    mlflow.set_experiment(f"{cfg.model}-search")
    tags = {"stage": "search", "method": method, "granularity": granularity}
    with mlflow.start_run(run_name=study.study_name, tags=tags):
        mlflow.log_params({"method": method, "granularity": granularity,
                           "study": study.study_name, "trials": cfg.search.trials,
                           "max_accuracy_drop": cfg.search.max_accuracy_drop,
                           "chosen_sparsity": choice["sparsity"], "chosen_trial": choice["trial"]})
        mlflow.log_metrics({"chosen_val_accuracy": choice["val_accuracy"],
                            "chosen_weight_sparsity": choice["weight_sparsity"]})
        for t in study.get_trials(deepcopy=False):
            with mlflow.start_run(run_name=f"trial-{t.number}", nested=True,
                                  tags={**tags, "state": t.state.name}):
                mlflow.log_params({**t.params, "trial": t.number})
                metrics = {k: v for k, v in t.user_attrs.items() if isinstance(v, float)}
                if t.values:
                    metrics.update(val_accuracy=t.values[0], sparsity=t.values[1])
                mlflow.log_metrics(metrics)
        names = [["val_accuracy", "sparsity"]]
        plots = {
            "pareto_front.png": lambda: vis.plot_pareto_front(study, target_names=names[0]),
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
