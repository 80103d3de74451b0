"""`prunelab train`: the baseline model, its metrics, and an MLflow run."""

from __future__ import annotations

import statistics
from pathlib import Path

from prunelab import tracking
from prunelab.config import Config
from prunelab.fileio import write_json
from prunelab.models import build_model, count_parameters, resolve_device, save_model
from prunelab.settings import test_split, train_settings, train_val_splits
from prunelab.training import evaluate, fit, seed_everything


def run(cfg: Config, model_path: Path, metrics_path: Path, seed: int | None = None) -> None:
    """Train the baseline with `seed` (default: params' seed; the sweep trains one per seed)."""
    name = f"{cfg.model}-baseline" + ("" if seed is None else f"-seed{seed}")
    seed = cfg.seed if seed is None else seed
    tracking.configure(cfg.mlflow.tracking_uri)  # before any work: fail fast if unreachable

    device = resolve_device(cfg.device)
    train, val = train_val_splits(cfg)
    test = test_split(cfg)

    seed_everything(seed)
    model = build_model(cfg.model).to(device)
    settings = train_settings(cfg)

    params = tracking.flat_params(
        {"model": cfg.model, "seed": seed, "device": str(device),
         "train": cfg.train.model_dump(), "data": cfg.data.model_dump(exclude={"sources"})})
    with tracking.stage_run(cfg.model, name, {"stage": "train", "seed": str(seed)}, params):
        tracking.log_mnist(cfg.data.root)
        history = fit(model, train, val, settings, seed, on_epoch=tracking.log_epoch,
                      desc=cfg.model)
        val_loss, val_acc = evaluate(model, val, settings.eval_batch_size)
        test_loss, test_acc = evaluate(model, test, settings.eval_batch_size)
        metrics = {
            "val_accuracy": val_acc, "val_loss": val_loss,
            "test_accuracy": test_acc, "test_loss": test_loss,
            "train_loss": history[-1].train_loss,
            "parameters": count_parameters(model),
        }
        save_model(model, model_path)
        write_json(metrics_path, metrics)
        # val_* and train_loss already have a per-epoch history; log the rest once. The
        # epoch time goes to MLflow only: in a DVC output it would differ run to run.
        tracking.log_record({k: v for k, v in metrics.items()
                             if k.startswith("test_") or k == "parameters"})
        # The median ignores the first epoch's warm-up outlier.
        tracking.log_record({"seconds_per_epoch": statistics.median(r.seconds
                                                                    for r in history)})
        tracking.log_torch_model(model)
    print(f"{cfg.model}: val {val_acc:.4f}  test {test_acc:.4f}  -> {model_path}")
