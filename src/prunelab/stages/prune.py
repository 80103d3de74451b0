"""`prunelab prune`: one method at one granularity applied to the baseline (the pruning
half of `pruning.prune_and_finetune`), saved with its metrics before fine-tuning."""

from __future__ import annotations

from pathlib import Path

from prunelab.artifacts import PRUNED, save_pruned
from prunelab.config import Config
from prunelab.fileio import write_json
from prunelab.metrics import accuracies, file_size, point_record
from prunelab.models import load_model, resolve_device
from prunelab.prune_params import prune_settings
from prunelab.pruning import prune_model
from prunelab.records import read_choice
from prunelab.settings import finetune_seed, finetune_settings, test_split, train_val_splits


def run(cfg: Config, method: str, granularity: str, baseline: Path, out_dir: Path,
        metrics_path: Path, choice_path: Path | None = None) -> None:
    choice = read_choice(choice_path) if choice_path else None
    train, val = train_val_splits(cfg)
    base = load_model(baseline, resolve_device(cfg.device))
    s = prune_settings(cfg, method, granularity, choice)
    # The chosen trial's seed, so that rounds > 1 fine-tune between rounds as it did.
    pruned = prune_model(base, train, val, s, finetune_settings(cfg, choice),
                         finetune_seed(cfg, choice))
    save_pruned(pruned, out_dir)
    splits = {"val": val, "test": test_split(cfg)}
    metrics = point_record(pruned.model, base.spec, s, {
        "model_bytes": file_size(out_dir / PRUNED),
        **accuracies(pruned.model, splits, cfg.train.eval_batch_size)})
    write_json(metrics_path, metrics)
    print(f"{method}-{granularity}: sparsity {metrics['sparsity']:.4f}, "
          f"val {metrics['val_accuracy']:.4f} before fine-tuning -> {out_dir}")
