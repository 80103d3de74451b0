"""From the validated `Config` to the library's training settings and data splits.

The one place where params.yaml's sections become `FitSettings` (training.py) and the
splits; `prune.settings` does the same for `PruneSettings`, apart so that the train
stage does not depend on the pruning code. Stages, scripts and benchmarks all build them
here, so they cannot drift apart; the pruning core (`prune`, `metrics`, `study`) takes
these objects and never reads a `Config`.
"""

from __future__ import annotations

from prunelab.config import Config
from prunelab.data import Split, load_test, load_train_val, verify_mnist
from prunelab.models import resolve_device
from prunelab.records import SearchChoice
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
        weight_decay=t.weight_decay, optimizer=t.optimizer, penalty="none",
        penalty_weight=0.0, eval_batch_size=t.eval_batch_size, lr_schedule=t.lr_schedule,
    )


def finetune_settings(cfg: Config, choice: SearchChoice | None = None) -> FitSettings:
    """The baseline's loop with fine-tuning's own lr (or the searched one), epochs, penalty."""
    f, t = cfg.finetune, cfg.train
    lr = (choice.lr if choice else None) or f.lr
    return FitSettings(
        lr=lr, epochs=f.epochs, batch_size=t.batch_size, momentum=f.momentum,
        weight_decay=t.weight_decay, optimizer=t.optimizer, eval_batch_size=t.eval_batch_size,
        penalty=f.penalty, penalty_weight=f.penalty_weight, lr_schedule=f.lr_schedule,
    )


def finetune_seed(cfg: Config, choice: SearchChoice | None = None) -> int:
    """The chosen search trial's seed (the prune stage then repeats that
    trial's fine-tuning), else params' `seed`."""
    return choice.finetune_seed if choice else cfg.seed
