"""What several stages share: data on the chosen device, and settings from the config."""

from __future__ import annotations

from prunelab.config import Config
from prunelab.data import Split, load_test, load_train_val, verify_mnist
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
    )


def finetune_settings(cfg: Config) -> FitSettings:
    """The baseline's loop with fine-tuning's own lr, epochs and penalty."""
    f, t = cfg.finetune, cfg.train
    return FitSettings(
        lr=f.lr, epochs=f.epochs, batch_size=t.batch_size, momentum=f.momentum,
        weight_decay=t.weight_decay, optimizer=t.optimizer, eval_batch_size=t.eval_batch_size,
        penalty=f.penalty, penalty_weight=f.penalty_weight,
    )


def prune_settings(cfg: Config, method: str, granularity: str) -> PruneSettings:
    """A method's absolute threshold if params.yaml gives one, else the target sparsity."""
    p = cfg.prune
    threshold = p.thresholds.get(f"{method}-{granularity}")
    sparsity = p.weight_sparsity if granularity == "weight" else p.neuron_sparsity
    return PruneSettings(
        method=method, granularity=granularity,
        sparsity=None if threshold is not None else sparsity, threshold=threshold,
        scope=p.scope, normalize=p.normalize, include_output=p.prune_output_layer,
        seed=p.seed, neuron_norm=p.neuron_norm, activation_stat=p.activation_stat,
    )
