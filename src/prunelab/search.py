"""The Optuna study that picks each method's sparsity, judged on the validation split only.

The one library module that speaks Optuna (as `tracking` is the one that speaks MLflow):
the training and pruning code it calls knows nothing of it.

Each trial prunes the baseline to a sampled target (density = 1 - sparsity, log-uniform)
and fine-tunes it through `pruning.prune_and_finetune` — the procedure the `prune` and
`finetune` stages run, with the same rounds, schedule and epochs — and returns two
objectives: val accuracy and the sparsity it realised (a Pareto front). The choice is the
highest sparsity whose val accuracy is at most `search.max_accuracy_drop` below the
baseline's. Optuna's pruners do not support multi-objective studies (Trial.report raises),
so a hopeless trial is stopped by a rule: after an epoch, one more than
`search.stop_margin` below the allowed accuracy ends as PRUNED.

Storage: a journal file in studies/ by default, or any Optuna RDB URL (PostgreSQL) shared
by several processes and machines. On an RDB a heartbeat marks a killed worker's trial
FAILED and it is retried. The journal file has no heartbeat: there, a search that starts
marks any RUNNING trial (orphaned by a killed earlier run) FAILED and queues it again.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import warnings
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from prunelab.config import Config
from prunelab.data import Split
from prunelab.errors import PrunelabError
from prunelab.masks import prunable_names
from prunelab.metrics import pruning_metrics
from prunelab.models import Net
from prunelab.pruning import Pruned, prune_and_finetune
from prunelab.settings import finetune_settings, mask_url, project_root, prune_settings
from prunelab.training import EpochResult, evaluate

JOURNAL = Path("studies/optuna-journal.log")
EPOCH_ATTR = "val_accuracy_epoch"  # + epoch: a trial's val accuracy after that epoch
DONE = (TrialState.COMPLETE, TrialState.PRUNED)
Objective = Callable[[optuna.Trial], tuple[float, float]]


def storage_url(cfg: Config) -> str | None:
    return os.environ.get("PRUNELAB_OPTUNA_STORAGE") or cfg.optuna.storage


class StorageError(PrunelabError, RuntimeError):
    """The Optuna storage cannot be opened."""


def journal_path() -> Path:
    """The default journal, in the main project (see `settings.project_root`). Absolute,
    because Optuna's lock is a symlink to this path: a relative target dangles (it resolves
    from studies/), so a lock left by a killed run would never be seen as stale."""
    return project_root() / JOURNAL


def open_storage(cfg: Config) -> optuna.storages.BaseStorage:
    url = storage_url(cfg)
    if not url:
        journal_path().parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(journal_path())))
    hb = cfg.optuna.heartbeat_s
    # Fail in seconds, not after a driver's default minutes, when the server is not there.
    connect = {"connect_timeout": 5} if url.startswith("postgresql") else {}
    try:
        with warnings.catch_warnings():
            # Heartbeats and their retry callback are marked experimental by Optuna (since
            # 2.8); they are what makes a killed worker's trial run again, so we use them.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            retry = RetryHeartbeatStaleTrialCallback(max_retry=cfg.optuna.retries)
            return RDBStorage(
                url, heartbeat_interval=hb, grace_period=2 * hb,
                heartbeat_stale_trial_callback=retry,
                engine_kwargs={"pool_pre_ping": True, "connect_args": connect},
            )
    except Exception as exc:  # SQLAlchemy's, the driver's: all mean "cannot open it"
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise StorageError(
            f"cannot open the Optuna storage {mask_url(url)}: "
            f"{reason.replace(url, mask_url(url))} — fix PRUNELAB_OPTUNA_STORAGE or "
            "optuna.storage in params.yaml") from None


# The code a trial runs: changing it, like changing params, must start a fresh study.
_TRIAL_CODE = ("criteria.py", "masks.py", "surgery.py", "pruning.py", "training.py",
               "settings.py", "search.py")


def study_name(cfg: Config, method: str, granularity: str) -> str:
    """model-method-granularity plus a hash of everything a trial depends on (params and
    code), so that a changed setup starts a new study while an interrupted one resumes."""
    relevant = {k: cfg.model_dump()[k] for k in ("seed", "model", "data", "train", "prune",
                                                  "finetune", "search")}
    relevant["data"].pop("sources")
    relevant["search"].pop("workers")
    h = hashlib.sha1(json.dumps(relevant, sort_keys=True).encode())
    package = Path(__file__).resolve().parent
    for name in _TRIAL_CODE:
        h.update((package / name).read_bytes())
    return f"{cfg.model}-{method}-{granularity}-{h.hexdigest()[:8]}"


def open_study(cfg: Config, method: str, granularity: str,
               storage: optuna.storages.BaseStorage, worker: int = 0) -> optuna.Study:
    # Each worker seeds its sampler differently, or they would all propose the same points.
    sampler = optuna.samplers.TPESampler(seed=cfg.search.seed + worker,
                                         n_startup_trials=min(5, cfg.search.trials))
    study = optuna.create_study(
        study_name=study_name(cfg, method, granularity), storage=storage,
        directions=["maximize", "maximize"], sampler=sampler, load_if_exists=True,
    )
    with warnings.catch_warnings():  # "experimental" since Optuna 3.2; the names are ours
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(["val_accuracy", "sparsity"])  # optuna-dashboard's axis names
    return study


def objective(cfg: Config, method: str, granularity: str, base: Net, train: Split,
              val: Split) -> Objective:
    """The trial function: prune and fine-tune as the stages will, report val accuracy."""
    base_val = evaluate(base, val, cfg.train.eval_batch_size).accuracy
    floor = base_val - cfg.search.max_accuracy_drop
    lo, hi = (cfg.search.weight_sparsity_range if granularity == "weight"
              else cfg.search.neuron_sparsity_range)

    def trial_fn(trial: optuna.Trial) -> tuple[float, float]:
        # Density (1 - sparsity) log-uniform: compression ratios 2x, 4x, 8x... get equal
        # room, so trials crowd where accuracy starts to fall, not at easy low sparsity.
        target = 1.0 - trial.suggest_float("density", 1.0 - hi, 1.0 - lo, log=True)
        ft = finetune_settings(cfg)
        if cfg.search.finetune_lr is not None:
            ft = replace(ft, lr=trial.suggest_float("lr", *cfg.search.finetune_lr, log=True))
        s = replace(prune_settings(cfg, method, granularity), sparsity=target, threshold=None)
        # Recorded so that the prune and finetune stages can repeat the chosen trial.
        seed = cfg.seed + trial.number
        trial.set_user_attr("sparsity", target)
        trial.set_user_attr("finetune_seed", seed)
        trial.set_user_attr("baseline_val_accuracy", base_val)
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        last: dict[str, float] = {}

        def measure_pruned(pruned: Pruned) -> None:
            prunable = prunable_names(base, s.prune_output_layer)
            last["realised"] = pruning_metrics(pruned.model, base.spec, prunable)["sparsity"]
            last["val"] = evaluate(pruned.model, val, ft.eval_batch_size).accuracy
            trial.set_user_attr("realised_sparsity", last["realised"])
            trial.set_user_attr(f"{EPOCH_ATTR}0", last["val"])

        def stop_if_hopeless(r: EpochResult) -> None:
            last["val"] = r.val_accuracy
            trial.set_user_attr(f"{EPOCH_ATTR}{r.epoch}", r.val_accuracy)
            if r.epoch < ft.epochs and r.val_accuracy < floor - cfg.search.stop_margin:
                raise optuna.TrialPruned(f"val accuracy {r.val_accuracy:.4f} after epoch "
                                         f"{r.epoch}")

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "cuts nothing" at the range's low end
            prune_and_finetune(base, train, val, s, ft, seed, on_pruned=measure_pruned,
                               on_epoch=stop_if_hopeless)
        # Feasible (<= 0) when within the allowed drop; TPE prefers feasible trials.
        trial.set_constraint("accuracy_drop_excess", floor - last["val"])
        trial.set_user_attr("constraint", floor - last["val"])
        return last["val"], last["realised"]

    return trial_fn


def reset_orphans(study: optuna.Study, storage: optuna.storages.BaseStorage) -> None:
    """Journal storage has no heartbeat: a RUNNING trial found at start-up was orphaned by a
    killed run. Fail it (and queue a retry, as the RDB heartbeat callback would)."""
    if isinstance(storage, RDBStorage):
        optuna.storages.fail_stale_trials(study)
        return
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        study.enqueue_trial(t.params, user_attrs={"retry_of": t.number})


def remaining_trials(study: optuna.Study, wanted: int) -> int:
    """Trials still to start: finished or running (on any machine) ones count as started;
    refinement trials come on top of `wanted`."""
    started = [t for t in study.get_trials(deepcopy=False, states=(*DONE, TrialState.RUNNING))
               if not t.user_attrs.get("refine")]
    return max(wanted - len(started), 0)


def _bracket(study: optuna.Study) -> tuple[float, float] | None:
    """Densities of the sparsest feasible and the densest infeasible complete trial, when
    the infeasible one is sparser (the boundary lies between them)."""
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    ok = [t.params["density"] for t in done if t.user_attrs["constraint"] <= 1e-12]
    bad = [t.params["density"] for t in done if t.user_attrs["constraint"] > 1e-12]
    if not ok or not bad or max(bad) >= min(ok):
        return None
    return min(ok), max(bad)


def refine(study: optuna.Study, trial_fn: Objective, steps: int,
           callbacks: list[Callable[[optuna.Study, optuna.trial.FrozenTrial], None]] | None = None
           ) -> None:
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
        study.optimize(trial_fn, n_trials=1, catch=(), callbacks=callbacks)


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
        "val_accuracy": best.values[0], "realised_sparsity": best.values[1],
        "baseline_val_accuracy": best.user_attrs["baseline_val_accuracy"],
        "within_allowed_drop": bool(ok),
        "trials_complete": len(done),
        "trials_pruned": len(study.get_trials(deepcopy=False, states=(TrialState.PRUNED,))),
        "trials_failed": len(study.get_trials(deepcopy=False, states=(TrialState.FAIL,))),
    }
