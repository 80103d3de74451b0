"""The comparison: each method over a ladder of compression ratios and several seeds, and
the statistics that say which method is best at each ratio (Blalock et al. 2020).

A ratio r means cutting 1 − 1/r of the prunable weights (weight granularity) or of the
hidden units (neuron granularity); the realised compression of all parameters, and the
FLOPs, are measured on the result, since a neuron cut also removes the next layer's
inputs and biases. Seed s selects the baseline trained with seed s, the calibration
batches, the random scores and the fine-tuning order, so the spread over seeds is the
spread of the whole procedure. The statistics over points are in `stats`.

The points are the queued trials of one Optuna study (plumbing in `studies`), so that any
number of workers on any machines compute each once; a point is a pure function of its
parameters, the params, the code and its seed's baseline, all of which name the study or
the point's key, so it is the same whoever computed it.
"""

from __future__ import annotations

import os
import socket
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import optuna

from prunelab import keys
from prunelab.config import Config
from prunelab.data import Split
from prunelab.errors import PrunelabError
from prunelab.methods import RANDOM, key
from prunelab.metrics import accuracies, point_record, pruning_metrics, which_right
from prunelab.models import Net
from prunelab.plumbing import studies
from prunelab.prune.granularity import GRANULARITIES, Pruned
from prunelab.prune.masks import PruningError, prunable_names
from prunelab.prune.procedure import finetune, prune_and_finetune, prune_model
from prunelab.prune.spec import PruneSettings
from prunelab.ratios import ratio_sparsity
from prunelab.records import Point, as_point, is_feasible, sweep_series
from prunelab.study.controls import CONTROLS, DENSE_FT, dense_finetuned, from_scratch
from prunelab.training import EpochResult, FitSettings


def point_settings(s: PruneSettings, ratio: float, seed: int) -> PruneSettings:
    """What a point at `ratio` with seed `seed` runs: `s` cut to the ratio, seeded `seed`."""
    return replace(s, sparsity=ratio_sparsity(ratio), threshold=None, seed=seed)


def sweep_point(
    base: Net, base_test_accuracy: float, splits: dict[str, Split], s: PruneSettings,
    ft: FitSettings, ratio: float, seed: int, matched_random: bool,
    on_epoch: Callable[[EpochResult], None] | None = None,
) -> Point:
    """Prune `base` to `ratio` with seed `seed` (calibration, random scores, fine-tuning
    order), fine-tune, and measure before and after on `splits` ("train", "val", "test").

    With `matched_random`, also a random control cut to the same per-layer sparsity as this
    criterion's (fields `matched_random_*`): how much of a lead is allocation, how much is
    the choice within layers. A point that cannot be realised (a layer would be emptied)
    comes back with its reason under `infeasible`, so that the sweep goes on.
    """
    s = point_settings(s, ratio, seed)
    where = (f"sweep point {key(s.method, s.granularity)} ratio {ratio:g} seed {seed} "
             f"rounds {s.rounds}")
    measured = {k: v for k, v in splits.items() if k != "train"}
    bs = ft.eval_batch_size
    before: dict[str, Any] = {}

    def measure_before(pruned: Pruned) -> None:
        before.update(accuracies(pruned.model, measured, bs, suffix="_before"))
        before.update(which_right(pruned.model, splits, bs, "_before"))

    try:
        pruned = prune_and_finetune(base, splits["train"], splits["val"], s, ft, seed,
                                    on_pruned=measure_before, on_epoch=on_epoch)
    except PruningError as exc:
        return as_point({"method": s.method, "granularity": s.granularity, "ratio": ratio,
                         "seed": seed, "rounds": s.rounds, "target_sparsity": s.sparsity,
                         "infeasible": str(exc)}, where)
    point = point_record(pruned.model, base.spec, s, {
        "ratio": ratio, "seed": seed, "rounds": s.rounds, **before,
        **accuracies(pruned.model, measured, bs),
        "baseline_test_accuracy": base_test_accuracy})
    point["test_accuracy_drop"] = base_test_accuracy - point["test_accuracy"]
    point.update(test_images=len(splits["test"]), val_images=len(splits["val"]),
                 **which_right(pruned.model, splits, bs))
    if matched_random:
        control = GRANULARITIES[s.granularity].matched_random(base, pruned, seed)
        point.update(accuracies(control, measured, bs, suffix="_before_matched_random"))
        finetune(control, splits["train"], splits["val"], ft, seed)
        point.update(accuracies(control, measured, bs, suffix="_matched_random"))
        point.update(which_right(control, splits, bs, "_matched_random"))
    return as_point(point, where)


def control_point(method: str, base: Net, base_test_accuracy: float,
                  splits: dict[str, Split], s: PruneSettings, ft: FitSettings,
                  training: FitSettings, ratio: float, seed: int) -> Point:
    """A control's point (`prunelab.study.controls`), measured like `sweep_point`'s: `dense+ft`
    (ratio 1, filed under weight granularity), or `scratch` with the widths that cutting
    `ratio` of the hidden units gives (`s`: random at neuron granularity, whose widths
    every method shares under `sweep.neuron_scope: layer`; under `global` its cut may
    empty a layer, and the point is infeasible, as a method's would be)."""
    train, val = splits["train"], splits["val"]
    where = f"sweep control {method} ratio {ratio:g} seed {seed}"
    if method == DENSE_FT:
        model, target, granularity = dense_finetuned(base, train, val, ft, seed), 0.0, "weight"
    else:
        s = point_settings(s, ratio, seed)
        target, granularity = s.sparsity or 0.0, "neuron"
        try:
            spec = prune_model(base, train, val, s, ft, seed).model.spec
        except PruningError as exc:  # no such widths (under a global neuron scope)
            return as_point({"method": method, "granularity": granularity, "ratio": ratio,
                             "seed": seed, "rounds": 1, "target_sparsity": target,
                             "infeasible": str(exc)}, where)
        model = from_scratch(spec, train, val, training, ft, seed)
    bs = ft.eval_batch_size
    point = {"method": method, "granularity": granularity, "ratio": ratio, "seed": seed,
             "rounds": 1, "target_sparsity": target, "threshold": None,
             **pruning_metrics(model, base.spec, prunable_names(base, s.prune_output_layer)),
             **accuracies(model, {"val": val, "test": splits["test"]}, bs),
             "baseline_test_accuracy": base_test_accuracy, "test_images": len(splits["test"]),
             "val_images": len(val), **which_right(model, splits, bs)}
    point["test_accuracy_drop"] = base_test_accuracy - point["test_accuracy"]
    return as_point(point, where)


Queued = tuple[str, dict[str, Any], dict[str, Any]]  # (key, params, user attrs)


SHARED = ("model", "device", "data", "train", "prune", "finetune", "sweep", "compute")


def study_name(cfg: Config) -> str:
    """<model>-sweep plus a hash of the params and code every point shares (`keys`). What
    is swept (methods, ratios, seeds, iterative rounds) and each criterion's own code and
    settings are in the points' keys instead, so adding or editing one criterion queues
    only its points, and the others stay done."""
    digest = keys.study_digest(cfg, SHARED, __name__, {
        "prune": keys.WHICH_WORK, "sweep": ("ratios", "seeds", "iterative_rounds")})
    return f"{cfg.model}-sweep-{digest}"


def points(cfg: Config, baselines: dict[int, Path]) -> list[Queued]:
    """Every point for the queue; its key names its series (and, in an iterative one, its
    rounds), ratio and seed, the seed's baseline by content, and the code and settings of
    the criteria it runs (a control: random's, whose scores give the scratch widths).
    Series by series: weight points (the slower ones) first when listed first, so that a
    pool ends on short tasks. Method and granularity are the trial's user attributes, not
    distributions: a study's value space cannot grow, its queue can."""
    digest = {s: keys.file_digest(m.read_bytes()) for s, m in baselines.items()}
    part = {m: keys.criterion_part(cfg, m)[:8]
            for m in {x.method for x in sweep_series(cfg)} | {RANDOM} if m not in CONTROLS}
    return [(f"{key(x.method, x.granularity)}-{f'k{x.rounds}-' if x.iterative else ''}"
             f"r{r:g}-s{s}-{digest[s]}-{part.get(x.method, part[RANDOM])}",
             {"ratio": r, "seed": s, "rounds": x.rounds},
             {"method": x.method, "granularity": x.granularity})
            for x in sweep_series(cfg) for s in cfg.sweep.seeds for r in x.ratios]


def open_study(cfg: Config, storage: optuna.storages.BaseStorage,
               create: bool) -> optuna.Study:
    """The sweep's study: created by the run that collects it, only opened by a helper."""
    name = study_name(cfg)
    if create:
        return optuna.create_study(study_name=name, storage=storage, direction="maximize",
                                   load_if_exists=True)
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        raise PrunelabError(
            f"no sweep study {name} on {studies.storage_label(cfg)}: start the sweep on one "
            "machine first (`dvc repro` or `prunelab sweep --out-dir sweep`), with the same "
            "params.yaml, code and models/seeds as this one") from None


@dataclass
class PointObjective:
    """The trial function of the sweep's study: compute the queued point it is given."""

    prune: dict[tuple[str, str], PruneSettings]  # (method, granularity) -> before ratio, seed
    finetune: FitSettings
    training: FitSettings  # the baseline's, for the `scratch` control
    matched_random: bool  # add the random control with each point's allocation
    rounds: int  # the main series' (finetune.rounds): only they get the matched control
    keys: set[str]  # the points this worker's baselines can compute
    # Splits and (baseline, its test accuracy) per seed, loaded on the first point only.
    load: Callable[[], tuple[dict[str, Split], dict[int, tuple[Net, float]]]]
    last: Point | None = None
    last_key: str | None = None  # the queue key of `last`
    _data: tuple[dict[str, Split], dict[int, tuple[Net, float]]] | None = None

    def __call__(self, trial: optuna.Trial) -> float:
        # Fixed by the queue; the distributions only declare them (for optuna-dashboard).
        method, granularity = trial.user_attrs["method"], trial.user_attrs["granularity"]
        ratio = trial.suggest_float("ratio", 1.0, 1e9, log=True)
        seed = trial.suggest_int("seed", -(2**31), 2**31 - 1)
        rounds = trial.suggest_int("rounds", 1, 1000)
        if trial.user_attrs[studies.QUEUED] not in self.keys:  # queued after check_queue
            raise PrunelabError(f"point {trial.user_attrs[studies.QUEUED]} needs other "
                                "baselines than models/seeds here")
        if self._data is None:
            self._data = self.load()
        splits, bases = self._data
        if method in CONTROLS:
            point = control_point(method, *bases[seed], splits, self.prune[(RANDOM, "neuron")],
                                  self.finetune, self.training, ratio, seed)
            return self._done(trial, point)
        s = replace(self.prune[(method, granularity)], rounds=rounds)
        # Only where a criterion allocates across layers (else the control is `random`),
        # and beside the main series: an iterative one is compared with its method's.
        matched = (self.matched_random and method != RANDOM and rounds == self.rounds
                   and GRANULARITIES[granularity].allocates(bases[seed][0], s))
        with warnings.catch_warnings():  # "cuts nothing" cannot happen for r > 1
            warnings.simplefilter("ignore")
            point = sweep_point(*bases[seed], splits, s, self.finetune, ratio, seed, matched)
        return self._done(trial, point)

    def _done(self, trial: optuna.Trial, point: Point) -> float:
        trial.set_user_attr("point", point)
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        self.last, self.last_key = point, trial.user_attrs[studies.QUEUED]
        if not is_feasible(point):
            raise optuna.TrialPruned(point["infeasible"])
        return point["val_accuracy"]


def check_queue(study: optuna.Study, keys: set[str]) -> None:
    """Refuse, before computing anything, a queue these baselines (`keys`) cannot serve: a
    point's key names its seed's baseline by content, and a point computed from another
    baseline would be filed under the wrong key."""
    waiting = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))
    queued = {str(t.user_attrs[studies.QUEUED]) for t in waiting if studies.QUEUED in t.user_attrs}
    foreign = sorted(queued - keys)
    if foreign:
        raise PrunelabError(
            f"{len(foreign)} queued point(s) of the sweep (first: {foreign[0]}, the last "
            "part names its seed's baseline by content) need baselines that models/seeds "
            "here does not hold: copy models/seeds from the machine that started the sweep")
