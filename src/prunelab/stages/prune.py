"""`prunelab prune`: one method at one granularity applied to the baseline.

Writes to its folder the pruned model (masks baked in, or the smaller dense model), the
mask (safetensors: weight masks, or `units.<i>` keep-vectors) and the spec as JSON, and
a metrics file with sparsity, size, FLOPs and accuracy before fine-tuning.
"""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import save_file

from prunelab.config import Config
from prunelab.fileio import atomic_path, write_bytes, write_json
from prunelab.masks import prunable_names
from prunelab.metrics import file_size, pruning_metrics
from prunelab.models import load_model, resolve_device, save_model
from prunelab.pruning import Pruned, prune_model
from prunelab.stages.common import (
    finetune_settings,
    prune_settings,
    read_choice,
    test_split,
    train_val_splits,
)
from prunelab.training import evaluate

MODEL, MASK, SPEC = "pruned.safetensors", "mask.safetensors", "spec.json"


def run(cfg: Config, method: str, granularity: str, baseline: Path, out_dir: Path,
        metrics_path: Path, choice_path: Path | None = None) -> None:
    choice = read_choice(choice_path)
    train, val = train_val_splits(cfg)
    base = load_model(baseline, resolve_device(cfg.device))
    s = prune_settings(cfg, method, granularity, choice)
    p = cfg.prune
    pruned = prune_model(base, train, val, s, cfg.finetune.rounds, p.calibration_batches,
                         p.calibration_batch_size, finetune_settings(cfg, choice), cfg.seed)

    save_outputs(pruned, out_dir)
    eval_bs = cfg.train.eval_batch_size
    metrics = {
        "method": method, "granularity": granularity,
        "target_sparsity": s.sparsity, "threshold": s.threshold,
        **pruning_metrics(pruned.model, base.spec, prunable_names(base, s.include_output)),
        "model_bytes": file_size(out_dir / MODEL),
        "val_accuracy": evaluate(pruned.model, val, eval_bs)[1],
        "test_accuracy": evaluate(pruned.model, test_split(cfg), eval_bs)[1],
    }
    write_json(metrics_path, metrics)
    print(f"{method}-{granularity}: sparsity {metrics['sparsity']:.4f}, "
          f"val {metrics['val_accuracy']:.4f} before fine-tuning -> {out_dir}")


def save_outputs(pruned: Pruned, out_dir: Path) -> None:
    save_model(pruned.model, out_dir / MODEL)
    with atomic_path(out_dir / MASK) as tmp:
        save_file(pruned.mask_tensors(), str(tmp))
    write_bytes(out_dir / SPEC, (pruned.model.spec.to_json() + "\n").encode())
