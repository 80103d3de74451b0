"""From the validated `Config` to the library's settings, and the data splits it names.

The one place where params.yaml's sections become `FitSettings` (training.py) and
`PruneSettings` (here):
stages, scripts and benchmarks all build them here, so they cannot drift apart.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prunelab.config import Config
from prunelab.data import Split, load_test, load_train_val, verify_mnist
from prunelab.errors import PrunelabError
from prunelab.fileio import read_json
from prunelab.models import resolve_device
from prunelab.training import FitSettings


@dataclass(frozen=True)
class PruneSettings:
    """How one criterion prunes (OpenLTH-style: one dataclass per concern, no defaults)."""

    method: str
    granularity: str  # "weight" | "neuron"
    # The target: the fraction of prunable weights (weight granularity) or of hidden units
    # (neuron granularity) to cut, or an absolute score threshold; exactly one is set.
    sparsity: float | None
    threshold: float | None
    scope: str  # "global" | "layer"
    normalize: bool
    prune_output_layer: bool
    neuron_norm: str
    activation_stat: str
    round_to: int  # neuron granularity: kept units per layer rounded to a multiple
    rounds: int  # 1 = one-shot; k > 1 reaches the target in k prune/fine-tune rounds
    calibration_batches: int
    calibration_batch_size: int
    seed: int  # calibration batches and random scores


def project_root() -> Path:
    """Where the default stores live: the main project, also for `dvc exp run --temp` and
    queued experiments, which run in a temporary copy (DVC sets DVC_ROOT to the project
    they came from), so that their MLflow runs and Optuna studies are not thrown away."""
    return Path(os.environ.get("DVC_ROOT") or Path.cwd()).resolve()


def mask_url(url: str) -> str:
    """A database URL with its password hidden (`***`), for every file, log and message."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:  # not a database URL (a path, an http URI): nothing to hide
        return url


def train_val_splits(cfg: Config) -> tuple[Split, Split]:
    """Train and validation splits on the configured device, after checking the files."""
    d = cfg.data
    verify_mnist(d.root)
    device = resolve_device(cfg.device)
    train, val = load_train_val(d.root, d.val_size, d.split_seed, d.train_limit)
    return train.to(device), val.to(device)


def test_split(cfg: Config) -> Split:
    """The test split, for final evaluation only (a search never calls this)."""
    return load_test(cfg.data.root, cfg.data.test_limit).to(resolve_device(cfg.device))


def train_settings(cfg: Config) -> FitSettings:
    t = cfg.train
    return FitSettings(
        lr=t.lr, epochs=t.epochs, batch_size=t.batch_size, momentum=t.momentum,
        weight_decay=t.weight_decay, optimizer=t.optimizer, penalty="none",
        penalty_weight=0.0, eval_batch_size=t.eval_batch_size, lr_schedule=t.lr_schedule,
    )


def read_choice(path: Any) -> dict[str, Any]:
    """The search stage's choice ({} without one): its sparsity and lr override params."""
    return read_json(path) if path is not None else {}


def finetune_settings(cfg: Config, choice: dict[str, Any] | None = None) -> FitSettings:
    """The baseline's loop with fine-tuning's own lr (or the searched one), epochs, penalty."""
    f, t = cfg.finetune, cfg.train
    lr = (choice or {}).get("lr") or f.lr
    return FitSettings(
        lr=lr, epochs=f.epochs, batch_size=t.batch_size, momentum=f.momentum,
        weight_decay=t.weight_decay, optimizer=t.optimizer, eval_batch_size=t.eval_batch_size,
        penalty=f.penalty, penalty_weight=f.penalty_weight, lr_schedule=f.lr_schedule,
    )


def prune_settings(cfg: Config, method: str, granularity: str,
                   choice: dict[str, Any] | None = None) -> PruneSettings:
    """The searched sparsity if given; else a method's absolute threshold from params.yaml,
    else its target sparsity there."""
    p = cfg.prune
    threshold = None if choice else p.thresholds.get(f"{method}-{granularity}")
    sparsity = p.weight_sparsity if granularity == "weight" else p.neuron_sparsity
    if choice:
        sparsity = choice["sparsity"]
    return PruneSettings(
        method=method, granularity=granularity,
        sparsity=None if threshold is not None else sparsity, threshold=threshold,
        scope=p.scope, normalize=p.normalize, prune_output_layer=p.prune_output_layer,
        neuron_norm=p.neuron_norm, activation_stat=p.activation_stat, round_to=p.round_to,
        rounds=cfg.finetune.rounds, calibration_batches=p.calibration_batches,
        calibration_batch_size=p.calibration_batch_size, seed=p.seed,
    )


def baseline_files(folder: Path, seeds: list[int]) -> dict[int, tuple[Path, Path]]:
    """The per-seed baselines (`train` writes <s>.safetensors and <s>.json per seed)."""
    files = {s: (folder / f"{s}.safetensors", folder / f"{s}.json") for s in seeds}
    missing = [str(p) for pair in files.values() for p in pair if not p.is_file()]
    if missing:
        raise PrunelabError(f"missing per-seed baseline file(s) {missing}; run "
                            "`dvc repro train` (one baseline per seed in sweep.seeds)")
    return files
