"""The Optuna study that picks each method's sparsity, judged on the validation split only.

The library module that speaks Optuna for the search (storage and queues: `studies`): the
training and pruning code it calls knows nothing of it.

Each trial prunes the baseline to a target density (1 - sparsity) and fine-tunes it
through `pruning.prune_and_finetune` — the procedure the `prune` and `finetune` stages run,
with the same rounds, schedule and epochs — and returns two objectives: val accuracy and
the sparsity it realised (a Pareto front). The first `search.trials` densities are log-
spaced over the range and queued when the study is created, each with its own fine-tuning
seed, so any number of workers on any machines gives the same trials; `refine` bisection
trials then close in on the accuracy-drop boundary, one after another. The choice is the
highest sparsity whose val accuracy is at most `search.max_accuracy_drop` below the
baseline's. Optuna's pruners do not support multi-objective studies (Trial.report raises),
so a hopeless trial is stopped by a rule: after an epoch, one more than
`search.stop_margin` below the allowed accuracy ends as PRUNED.
"""

from __future__ import annotations

import math
import os
import socket
import warnings
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import optuna
from optuna.trial import TrialState

from prunelab import keys
from prunelab.config import Config
from prunelab.data import Split
from prunelab.methods import key
from prunelab.metrics import pruning_metrics
from prunelab.models import Net
from prunelab.plumbing import studies
from prunelab.prune.granularity import Pruned
from prunelab.prune.masks import prunable_names
from prunelab.prune.procedure import prune_and_finetune
from prunelab.prune.settings import prune_settings
from prunelab.records import SearchChoice
from prunelab.settings import finetune_settings
from prunelab.training import EpochResult, evaluate

DONE = (TrialState.COMPLETE, TrialState.PRUNED)
EPOCH_ATTR = "val_accuracy_epoch"  # + epoch: a trial's val accuracy after that epoch
Objective = Callable[[optuna.Trial], tuple[float, float]]


def study_name(cfg: Config, method: str, granularity: str, baseline: Path) -> str:
    """model-method-granularity plus a hash of what its trials depend on (`keys`): the
    params they read, the baseline's bytes, the search's procedure and the method's own
    code and settings, so that a changed setup starts a new study while an interrupted
    one resumes, and another method's change leaves this study as it is."""
    digest = keys.study_digest(
        cfg, ("seed", "model", "device", "data", "train", "prune", "finetune", "search",
              "compute"), __name__, {"prune": keys.WHICH_WORK},
        keys.criterion_part(cfg, method), keys.file_digest(baseline.read_bytes()))
    return f"{cfg.model}-{key(method, granularity)}-{digest}"


def sparsity_range(cfg: Config, granularity: str) -> tuple[float, float]:
    """The searched range of the fraction cut: of prunable weights, or of hidden units."""
    lo, hi = {"weight": cfg.search.weight_sparsity_range,
              "neuron": cfg.search.neuron_sparsity_range}[granularity]
    return lo, hi


def density_grid(cfg: Config, granularity: str) -> list[float]:
    """`search.trials` densities (1 - sparsity) log-spaced over the search range: ratios
    2×, 4×, 8×... get equal room, so trials crowd where accuracy starts to fall."""
    lo, hi = sparsity_range(cfg, granularity)
    n, a, b = cfg.search.trials, math.log(1.0 - hi), math.log(1.0 - lo)
    return [math.exp(a + (b - a) * (i / (n - 1) if n > 1 else 0.5)) for i in range(n)]


def open_study(cfg: Config, method: str, granularity: str,
               storage: optuna.storages.BaseStorage, baseline: Path) -> optuna.Study:
    """The method's study, created with its grid trials queued (or opened as it is)."""
    # Only a searched fine-tuning lr is sampled; seeded, but then which trial gets which lr
    # depends on the order the workers ask in.
    sampler = optuna.samplers.TPESampler(seed=cfg.search.seed,
                                         n_startup_trials=min(5, cfg.search.trials))
    study = optuna.create_study(
        study_name=study_name(cfg, method, granularity, baseline), storage=storage,
        directions=["maximize", "maximize"], sampler=sampler, load_if_exists=True,
    )
    with warnings.catch_warnings():  # "experimental" since Optuna 3.2; the names are ours
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(["val_accuracy", "sparsity"])  # optuna-dashboard's axis names
    studies.queue(study, [(f"grid-{i}", {"density": d}, {"seed": cfg.seed + i})
                          for i, d in enumerate(density_grid(cfg, granularity))])
    return study


def objective(cfg: Config, method: str, granularity: str, base: Net, train: Split,
              val: Split) -> Objective:
    """The trial function: prune and fine-tune as the stages will, report val accuracy."""
    base_val = evaluate(base, val, cfg.train.eval_batch_size).accuracy
    floor = base_val - cfg.search.max_accuracy_drop
    lo, hi = sparsity_range(cfg, granularity)

    def trial_fn(trial: optuna.Trial) -> tuple[float, float]:
        # Fixed by the queue (`density_grid`, `refine`); the range only declares it.
        target = 1.0 - trial.suggest_float("density", 1.0 - hi, 1.0 - lo, log=True)
        ft = finetune_settings(cfg)
        if cfg.search.finetune_lr is not None:
            ft = replace(ft, lr=trial.suggest_float("lr", *cfg.search.finetune_lr, log=True))
        s = replace(prune_settings(cfg, method, granularity), sparsity=target, threshold=None)
        # Recorded so that the prune stage can repeat the chosen trial.
        seed = trial.user_attrs["seed"]
        trial.set_user_attr("sparsity", target)
        trial.set_user_attr("finetune_seed", seed)
        trial.set_user_attr("baseline_val_accuracy", base_val)
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        last: dict[str, float] = {}

        def measure_pruned(pruned: Pruned) -> None:  # before fine-tuning, where there is one
            last["val"] = evaluate(pruned.model, val, ft.eval_batch_size).accuracy
            trial.set_user_attr(f"{EPOCH_ATTR}0", last["val"])

        def stop_if_hopeless(r: EpochResult) -> None:
            last["val"] = r.val_accuracy
            trial.set_user_attr(f"{EPOCH_ATTR}{r.epoch}", r.val_accuracy)
            if r.epoch < ft.epochs and r.val_accuracy < floor - cfg.search.stop_margin:
                raise optuna.TrialPruned(f"val accuracy {r.val_accuracy:.4f} after epoch "
                                         f"{r.epoch}")

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "cuts nothing" at the range's low end
            pruned = prune_and_finetune(base, train, val, s, ft, seed,
                                        on_pruned=measure_pruned, on_epoch=stop_if_hopeless)
        if "val" not in last:  # no epoch and nothing before it (gmp with epochs: 0)
            last["val"] = evaluate(pruned.model, val, ft.eval_batch_size).accuracy
        prunable = prunable_names(base, s.prune_output_layer)
        last["realised"] = pruning_metrics(pruned.model, base.spec, prunable)["sparsity"]
        trial.set_user_attr("realised_sparsity", last["realised"])
        # Feasible (<= 0) when within the allowed drop; TPE prefers feasible trials.
        trial.set_constraint("accuracy_drop_excess", floor - last["val"])
        trial.set_user_attr("constraint", floor - last["val"])
        return last["val"], last["realised"]

    return trial_fn


def grid_keys(cfg: Config) -> set[str]:
    return {f"grid-{i}" for i in range(cfg.search.trials)}


def _bracket(study: optuna.Study) -> tuple[float, float] | None:
    """Densities of the sparsest feasible and the densest infeasible complete trial, when
    the infeasible one is sparser (the boundary lies between them)."""
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    ok = [t.params["density"] for t in done if t.user_attrs["constraint"] <= 1e-12]
    bad = [t.params["density"] for t in done if t.user_attrs["constraint"] > 1e-12]
    if not ok or not bad or max(bad) >= min(ok):
        return None
    return min(ok), max(bad)


def refine(cfg: Config, study: optuna.Study, trial_fn: Objective,
           callbacks: list[studies.Callback] | None = None) -> None:
    """Bisect the accuracy-drop boundary (`search.refine` steps, one after another, each
    from all the trials before it): the grid spreads trials along the whole range, while
    the choice needs the front's edge. A step is a queued trial with its own key and seed,
    so a resumed search runs only the missing steps."""
    for k in range(cfg.search.refine):
        key = f"refine-{k}"
        if not any(t.user_attrs.get(studies.QUEUED) == key and t.state in DONE
                   for t in study.get_trials(deepcopy=False)):
            bracket = _bracket(study)
            if bracket is None:
                return
            studies.queue(study, [(key, {"density": (bracket[0] * bracket[1]) ** 0.5},
                                   {"refine": True, "seed": cfg.seed + cfg.search.trials + k})])
            studies.run_queued(study, trial_fn, callbacks)


def choose(study: optuna.Study, max_drop: float, storage: str) -> SearchChoice:
    """The highest-sparsity finished trial within the allowed val-accuracy drop (`storage`:
    where the study is, for the record, never with a password)."""
    # Queued trials only: a trial made when a worker found the queue empty computed nothing.
    mine = [t for t in study.get_trials(deepcopy=False) if studies.QUEUED in t.user_attrs]
    done = [t for t in mine if t.state == TrialState.COMPLETE]
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
    return SearchChoice(
        study=study.study_name, trial=best.number, trial_key=best.user_attrs[studies.QUEUED],
        sparsity=best.user_attrs["sparsity"], lr=best.params.get("lr"),
        finetune_seed=best.user_attrs["finetune_seed"], val_accuracy=best.values[0],
        realised_sparsity=best.values[1],
        baseline_val_accuracy=best.user_attrs["baseline_val_accuracy"],
        within_allowed_drop=bool(ok), trials_complete=len(done),
        trials_pruned=sum(t.state == TrialState.PRUNED for t in mine),
        trials_failed=sum(t.state == TrialState.FAIL for t in mine), storage=storage)
