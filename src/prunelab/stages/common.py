"""What several stages share: data on the chosen device, and settings from the config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prunelab.config import Config
from prunelab.data import Split, load_test, load_train_val, verify_mnist
from prunelab.fileio import read_json
from prunelab.models import resolve_device
from prunelab.pruning import PruneSettings
from prunelab.training import FitSettings


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
        weight_decay=t.weight_decay, optimizer=t.optimizer, eval_batch_size=t.eval_batch_size,
        lr_schedule=t.lr_schedule,
    )


def read_choice(path: Path | None) -> dict[str, Any]:
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
        scope=p.scope, normalize=p.normalize, include_output=p.prune_output_layer,
        seed=p.seed, neuron_norm=p.neuron_norm, activation_stat=p.activation_stat,
        round_to=p.round_to,
    )


def run_params(cfg: Config, method: str, granularity: str, target_sparsity: float | None,
               ft: FitSettings, seed: int) -> dict[str, Any]:
    """The MLflow params every pruned-model run logs (finetune stage, sweep points), so that
    the MLflow UI's compare view lines them all up under the same names."""
    return {
        "method": method, "granularity": granularity, "scope": cfg.prune.scope,
        "target_sparsity": target_sparsity, "normalize": cfg.prune.normalize,
        "rounds": cfg.finetune.rounds, "finetune.lr": ft.lr, "finetune.epochs": ft.epochs,
        "finetune.penalty": ft.penalty, "finetune.lr_schedule": ft.lr_schedule,
        "finetune.weight_decay": ft.weight_decay, "seed": seed,
    }
