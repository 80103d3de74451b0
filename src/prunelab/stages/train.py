"""`prunelab train`: one baseline per seed in `sweep.seeds` (in worker processes), each
with its metrics and an MLflow run; the `seed` one's metrics are also the pipeline's
baseline metrics (the searched operating points prune that model)."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from prunelab.config import Config, load_config
from prunelab.data import mnist_digest, verify_mnist
from prunelab.models import Net, build_model, count_parameters, resolve_device, save_model
from prunelab.plumbing import model_registry, tracking
from prunelab.plumbing.fileio import atomic_dir, write_json
from prunelab.plumbing.progress import progress
from prunelab.settings import test_split, train_settings, train_val_splits
from prunelab.training import evaluate, fit, seed_everything
from prunelab.workers import worker_pool


class _Trainer:
    """One worker's data (test included: the baselines' test accuracy is reported)."""

    def __init__(self, params: str) -> None:
        self.cfg = load_config(params)
        tracking.configure(self.cfg.mlflow)
        self.train, self.val = train_val_splits(self.cfg)
        self.test = test_split(self.cfg)


def _train_one(w: _Trainer, seed: int) -> tuple[int, Net, dict[str, Any]]:
    """Train, evaluate and log one baseline; the stage writes the files, all at once."""
    cfg, settings = w.cfg, train_settings(w.cfg)
    seed_everything(seed)
    model = build_model(cfg.model).to(resolve_device(cfg.device))
    params = tracking.flat_params(
        {"model": cfg.model, "seed": seed, "device": str(resolve_device(cfg.device)),
         "train": cfg.train.model_dump(), "data": cfg.data.model_dump(exclude={"sources"})})
    tags = {"stage": "train", "seed": str(seed), "searched": str(seed == cfg.seed).lower()}
    with tracking.stage_run(cfg.model, f"{cfg.model}-baseline-seed{seed}", tags, params):
        tracking.log_mnist(cfg.data.root, mnist_digest())
        history = fit(model, w.train, w.val, settings, seed, on_epoch=tracking.log_epoch,
                      desc=f"{cfg.model} seed {seed}")
        val_loss, val_acc = evaluate(model, w.val, settings.eval_batch_size)
        test_loss, test_acc = evaluate(model, w.test, settings.eval_batch_size)
        metrics: dict[str, Any] = {
            "seed": seed, "val_accuracy": val_acc, "val_loss": val_loss,
            "test_accuracy": test_acc, "test_loss": test_loss,
            "train_loss": history[-1].train_loss, "parameters": count_parameters(model),
        }
        # val_* and train_loss already have a per-epoch history; log the rest once. The
        # epoch time goes to MLflow only: in a DVC output it would differ run to run.
        tracking.log_record({k: v for k, v in metrics.items()
                             if k.startswith("test_") or k == "parameters"})
        # The median ignores the first epoch's warm-up outlier.
        tracking.log_record({"seconds_per_epoch": statistics.median(r.seconds
                                                                    for r in history)})
        model_registry.log_torch_model(model)
    print(f"{cfg.model} seed {seed}: val {val_acc:.4f}  test {test_acc:.4f}", flush=True)
    return seed, model, metrics


def run(cfg: Config, params: Path, out_dir: Path, metrics_path: Path, workers: int) -> None:
    tracking.configure(cfg.mlflow)  # before any work: fail fast if unreachable
    verify_mnist(cfg.data.root)  # before any process starts
    seeds = cfg.sweep.seeds
    with worker_pool(_Trainer, (str(params),), min(workers, len(seeds)),
                     cfg.compute.threads) as imap:
        trained = {seed: (model, metrics) for seed, model, metrics in progress(
            imap(_train_one, seeds), len(seeds), "train", "baselines")}
    with atomic_dir(out_dir) as tmp:  # all the baselines, or the previous ones
        for seed, (model, metrics) in trained.items():
            save_model(model, tmp / f"{seed}.safetensors")
            write_json(tmp / f"{seed}.json", metrics)
    write_json(metrics_path, trained[cfg.seed][1])
    print(f"{cfg.model}: the searched baseline is seed {cfg.seed} -> {metrics_path}")
