"""`prunelab finetune`: fine-tune a pruned model with its cut weights held at zero (the
fine-tuning half of `pruning.prune_and_finetune`), and log the (method, granularity) run
to MLflow with its mask and model."""

from __future__ import annotations

import tempfile
from pathlib import Path

from safetensors.torch import load_file, save_file

from prunelab import model_registry, tracking
from prunelab.artifacts import FINETUNED, MASK, load_pruned
from prunelab.config import Config
from prunelab.fileio import read_json, write_json
from prunelab.granularity import Pruned
from prunelab.metrics import accuracies, file_size, point_record
from prunelab.models import baked, load_model, resolve_device, save_model
from prunelab.prune_params import prune_settings
from prunelab.pruning import finetune_pruned
from prunelab.records import read_choice
from prunelab.settings import finetune_seed, finetune_settings, test_split, train_val_splits


def run(cfg: Config, method: str, granularity: str, pruned_dir: Path, baseline: Path,
        prune_metrics: Path, metrics_path: Path, choice_path: Path | None = None) -> None:
    tracking.configure(cfg.mlflow.tracking_uri)  # before any work: fail fast if unreachable
    import mlflow

    train, val = train_val_splits(cfg)
    model = load_pruned(pruned_dir, granularity, resolve_device(cfg.device))
    kept = load_file(str(pruned_dir / MASK))
    before = read_json(prune_metrics)
    base = load_model(baseline)
    choice = read_choice(choice_path) if choice_path else None
    settings = finetune_settings(cfg, choice)
    s = prune_settings(cfg, method, granularity, choice)
    seed = finetune_seed(cfg, choice)
    params = tracking.run_params(s, settings, seed)
    tags = {"stage": "finetune", "method": method, "granularity": granularity}
    with tracking.stage_run(cfg.model, f"{method}-{granularity}", tags, params):
        tracking.log_mnist(cfg.data.root)
        # A method that prunes during fine-tuning (gmp, movement) makes its cut here.
        pruned = finetune_pruned(Pruned(model, kept, {}), train, val, s, settings, seed,
                                 on_epoch=tracking.log_epoch)
        model = pruned.model
        save_model(model, pruned_dir / FINETUNED)
        splits = {"val": val, "test": test_split(cfg)}
        metrics = point_record(model, base.spec, s, {
            "model_bytes": file_size(pruned_dir / FINETUNED),
            "val_accuracy_before": before["val_accuracy"],
            "test_accuracy_before": before["test_accuracy"],
            **accuracies(model, splits, settings.eval_batch_size)})
        write_json(metrics_path, metrics)
        tracking.log_record(metrics, skip=params)
        with tempfile.TemporaryDirectory() as tmp:  # the final cut (gradual: not the prune stage's)
            save_file(pruned.mask_tensors(), f"{tmp}/{MASK}")
            mlflow.log_artifact(f"{tmp}/{MASK}")
        model_registry.log_torch_model(baked(model),
                                 registered_model_name=f"{cfg.model}-{method}-{granularity}")
    print(f"{method}-{granularity}: test {metrics['test_accuracy']:.4f} after fine-tuning "
          f"(was {metrics['test_accuracy_before']:.4f})")
