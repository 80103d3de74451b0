"""When to prune, as a study: every method at initialisation × ratio × seed (and its sanity
variants) as the queued trials of one Optuna study, computed once by any number of workers,
as the sweep's points are (`study.sweep`; plumbing in `plumbing.studies`).

A point is a pure function of what names it: the study's name hashes the params every
point shares (the model, data, the training recipe, the calibration, SynFlow's rounds, the
kernels) and the code of this module with what it imports (`when.init_point`, `at_init`,
training); the point's key adds its method, variant, ratio and seed. So adding a method or
a ratio queues only its points, and the sweep's own points are untouched by this study.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import optuna

from prunelab import keys
from prunelab.config import Config, PruneConfig
from prunelab.data import Split
from prunelab.errors import PrunelabError
from prunelab.plumbing import studies
from prunelab.training import FitSettings
from prunelab.when.init_point import AT_INIT, VARIANTS, InitSettings, init_point

# The params every point shares, and within them what chooses only *which* points exist or
# does not reach a point (the rest of prune; the epochs enter as the number trained, so
# `when.epochs: null` and the same number written out are one study).
SHARED = ("model", "device", "data", "train", "prune", "when", "compute")
_PRUNE_READ = {"calibration_batches", "calibration_batch_size", "prune_output_layer"}
IGNORED = {"when": ("enabled", "methods", "ratios", "sanity", "epochs"),
           "prune": tuple(sorted(set(PruneConfig.model_fields) - _PRUNE_READ))}

Queued = tuple[str, dict[str, Any], dict[str, Any]]  # (key, params, user attrs)


def check(cfg: Config) -> None:
    """Refuse, in one line, a method that is not one of `AT_INIT`."""
    for m in cfg.when.methods:
        if m not in AT_INIT:
            raise PrunelabError(f"when.methods: {m!r} is not a method at initialisation; "
                                f"choose among {sorted(AT_INIT)}")


def epochs(cfg: Config) -> int:
    """How long a point trains after its cut (`when.epochs`; None: what an after-training
    point has trained in all, train.epochs + finetune.epochs)."""
    return cfg.when.epochs or cfg.train.epochs + cfg.finetune.epochs


def settings(cfg: Config, training: FitSettings) -> tuple[FitSettings, InitSettings]:
    """The training a point runs (the baseline's recipe for `epochs`) and its cut's."""
    p = cfg.prune
    return replace(training, epochs=epochs(cfg)), InitSettings(
        calibration_batches=p.calibration_batches,
        calibration_batch_size=p.calibration_batch_size,
        synflow_rounds=cfg.when.synflow_rounds, prune_output_layer=p.prune_output_layer)


def variants(cfg: Config, method: str) -> tuple[str, ...]:
    """A method's variants: its own mask and, with `when.sanity`, the two checks (random's
    masks are random already: its own only)."""
    return VARIANTS if cfg.when.sanity and method != "random" else VARIANTS[:1]


def study_name(cfg: Config) -> str:
    """<model>-when plus a hash of the params and code every point shares."""
    digest = keys.study_digest(cfg, SHARED, __name__, IGNORED, f"epochs {epochs(cfg)}")
    return f"{cfg.model}-when-{digest}"


def points(cfg: Config) -> list[Queued]:
    """Every point for the queue, its key naming method, variant, ratio and seed."""
    return [(f"{m}-{v}-r{r:g}-s{s}", {"ratio": r, "seed": s}, {"method": m, "variant": v})
            for m in cfg.when.methods for v in variants(cfg, m) for s in cfg.sweep.seeds
            for r in cfg.when.ratios]


def open_study(cfg: Config, storage: optuna.storages.BaseStorage,
               create: bool) -> optuna.Study:
    """The study: created by the run that collects it, only opened by a helper. (The
    shape of `study.sweep.open_study`, not shared with it: that code is in every sweep
    study's key, and moving it would rename them all, a whole rerun for every user.)"""
    name = study_name(cfg)
    if create:
        return optuna.create_study(study_name=name, storage=storage, direction="maximize",
                                   load_if_exists=True)
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        raise PrunelabError(
            f"no study {name} on {studies.storage_label(cfg)}: start `prunelab when` on one "
            "machine first (`dvc repro`), with the same params.yaml and code as this one"
        ) from None


@dataclass
class InitObjective:
    """The trial function: compute the queued point it is given."""

    model: str
    training: FitSettings
    cut: InitSettings
    # Splits and each seed's baseline test accuracy, loaded on the first point only.
    load: Callable[[], tuple[dict[str, Split], dict[int, float]]]
    last: dict[str, Any] | None = None
    last_key: str | None = None
    _data: tuple[dict[str, Split], dict[int, float]] | None = None

    def __call__(self, trial: optuna.Trial) -> float:
        method, variant = trial.user_attrs["method"], trial.user_attrs["variant"]
        ratio = trial.suggest_float("ratio", 1.0, 1e9, log=True)  # fixed by the queue
        seed = trial.suggest_int("seed", -(2**31), 2**31 - 1)
        if self._data is None:
            self._data = self.load()
        splits, base_accuracy = self._data
        point = init_point(self.model, splits, method, variant, ratio, seed, self.training,
                           self.cut, base_accuracy[seed])
        trial.set_user_attr("point", point)
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        self.last, self.last_key = point, trial.user_attrs[studies.QUEUED]
        return float(point["val_accuracy"])
