"""`prunelab finetune`: fine-tune a pruned model with its cut weights held at zero, and
log the (method, granularity) run to MLflow with its mask and model."""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import load_file

from prunelab import tracking
from prunelab.config import Config
from prunelab.fileio import read_json, write_json
from prunelab.masks import apply_masks, prunable_names
from prunelab.metrics import file_size, pruning_metrics
from prunelab.models import baked, load_model, resolve_device, save_model
from prunelab.pruning import finetune
from prunelab.stages.common import (
    finetune_settings,
    read_choice,
    run_params,
    test_split,
    train_val_splits,
)
from prunelab.stages.prune import MASK, MODEL
from prunelab.training import EpochResult, evaluate

FINETUNED = "finetuned.safetensors"


def run(cfg: Config, method: str, granularity: str, pruned_dir: Path, baseline: Path,
        prune_metrics: Path, metrics_path: Path, choice_path: Path | None = None) -> None:
    tracking.configure(cfg.mlflow.tracking_uri)  # before any work: fail fast if unreachable
    import mlflow

    device = resolve_device(cfg.device)
    train, val = train_val_splits(cfg)
    model = load_model(pruned_dir / MODEL, device)
    mask_file = pruned_dir / MASK
    if granularity == "weight":
        masks = {k: v.bool() for k, v in load_file(str(mask_file)).items()}
        apply_masks(model, masks)
    before = read_json(prune_metrics)
    base = load_model(baseline)
    choice = read_choice(choice_path)
    settings = finetune_settings(cfg, choice)

    mlflow.set_experiment(cfg.model)
    with mlflow.start_run(run_name=f"{method}-{granularity}",
                          tags={"stage": "finetune", "method": method,
                                "granularity": granularity}):
        mlflow_params = {
            **run_params(cfg, method, granularity, before["target_sparsity"], settings,
                         cfg.seed),
            "threshold": before["threshold"],
        }
        mlflow.log_params(mlflow_params)

        def log_epoch(r: EpochResult) -> None:
            mlflow.log_metrics({"val_accuracy": r.val_accuracy, "val_loss": r.val_loss,
                                "train_loss": r.train_loss, "lr": r.lr}, step=r.epoch)

        # The chosen search trial's seed: the stage then repeats that trial's fine-tuning.
        seed = choice.get("finetune_seed", cfg.seed)
        finetune(model, train, val, settings, seed, on_epoch=log_epoch)
        save_model(model, pruned_dir / FINETUNED)
        eval_bs = settings.eval_batch_size
        metrics = {
            **pruning_metrics(model, base.spec, prunable_names(base, cfg.prune.prune_output_layer)),
            "method": method, "granularity": granularity,
            "target_sparsity": before["target_sparsity"], "threshold": before["threshold"],
            "model_bytes": file_size(pruned_dir / FINETUNED),
            "val_accuracy_before": before["val_accuracy"],
            "test_accuracy_before": before["test_accuracy"],
            "val_accuracy": evaluate(model, val, eval_bs)[1],
            "test_accuracy": evaluate(model, test_split(cfg), eval_bs)[1],
        }
        write_json(metrics_path, metrics)
        mlflow.log_metrics({k: float(v) for k, v in metrics.items()
                            if isinstance(v, (int, float)) and k not in mlflow_params})
        mlflow.log_metrics({f"layer_sparsity.{k}": v
                            for k, v in metrics["layer_sparsity"].items()})
        mlflow.log_artifact(str(mask_file))
        tracking.log_torch_model(baked(model))
    print(f"{method}-{granularity}: test {metrics['test_accuracy']:.4f} after fine-tuning "
          f"(was {metrics['test_accuracy_before']:.4f})")
