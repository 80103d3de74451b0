"""`prunelab sweep`: one method at one granularity over every ratio in `sweep.ratios` and
every seed in `sweep.seeds`, each point its own MLflow run (nested under one run per
method) with the same param and metric names as the finetune stage's runs."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from prunelab import tracking
from prunelab.config import Config
from prunelab.fileio import read_json, write_json
from prunelab.masks import prunable_names
from prunelab.models import build_model, load_model, resolve_device, unit_groups
from prunelab.settings import (
    baseline_files,
    finetune_settings,
    prune_settings,
    test_split,
    train_val_splits,
)
from prunelab.sweep import sweep_point


class _Points:
    """Computes sweep points; one instance per worker process, holding data and baselines."""

    def __init__(self, cfg: Config, method: str, granularity: str,
                 files: dict[int, tuple[Path, Path]], threads: int | None = None) -> None:
        if threads:
            torch.set_num_threads(threads)  # workers on one machine share its cores
        device = resolve_device(cfg.device)
        train, val = train_val_splits(cfg)
        self.splits = {"train": train, "val": val, "test": test_split(cfg)}
        self.bases = {s: (load_model(m, device), read_json(j)["test_accuracy"])
                      for s, (m, j) in files.items()}
        self.settings = prune_settings(cfg, method, granularity)
        if granularity == "neuron":
            self.settings = replace(self.settings, scope=cfg.sweep.neuron_scope)
        self.matched = cfg.sweep.matched_random and method != "random" and _allocates(
            cfg, granularity)
        self.ft = finetune_settings(cfg)

    def __call__(self, task: tuple[int, float]) -> dict[str, Any]:
        seed, ratio = task
        with warnings.catch_warnings():  # "cuts nothing" cannot happen for r > 1
            warnings.simplefilter("ignore")
            return sweep_point(*self.bases[seed], self.splits, self.settings, self.ft, ratio,
                               seed, self.matched)


def _allocates(cfg: Config, granularity: str) -> bool:
    """Whether a criterion chooses how much each layer loses. Where it cannot (one pruned
    layer, or the same fraction of units cut in every layer), random pruning with its
    per-layer sparsity is plain random pruning: the same seeded scores, the same mask."""
    model = build_model(cfg.model)
    if granularity == "weight":
        return len(prunable_names(model, cfg.prune.prune_output_layer)) > 1
    return cfg.sweep.neuron_scope == "global" and len(unit_groups(model)) > 1


_worker: _Points | None = None


def _init_worker(*args: Any) -> None:
    global _worker
    _worker = _Points(*args)


def _run_task(task: tuple[int, float]) -> dict[str, Any]:
    assert _worker is not None
    return _worker(task)


def run(cfg: Config, method: str, granularity: str, baselines: Path, out: Path,
        workers: int) -> None:
    files = baseline_files(baselines, cfg.sweep.seeds)  # before any work
    tracking.configure(cfg.mlflow.tracking_uri)
    tasks = [(seed, ratio) for seed in cfg.sweep.seeds for ratio in cfg.sweep.ratios]
    workers = max(1, min(workers, len(tasks)))
    points = []
    tags = {"stage": "sweep", "method": method, "granularity": granularity}
    with tracking.stage_run(f"{cfg.model}-sweep", f"sweep-{method}-{granularity}", tags):
        tracking.log_mnist(cfg.data.root)
        with contextlib.ExitStack() as stack:
            if workers == 1:
                results = map(_Points(cfg, method, granularity, files), tasks)
            else:
                # Each point is seeded on its own and each worker runs one thread per core
                # share, so a point's result does not depend on which worker ran it.
                threads = max(1, (os.cpu_count() or 1) // workers)
                pool = stack.enter_context(multiprocessing.get_context("spawn").Pool(
                    workers, _init_worker, (cfg, method, granularity, files, threads)))
                results = pool.imap(_run_task, tasks)
            for point in results:  # in task order, logged as they arrive
                points.append(point)
                if "infeasible" in point:
                    print(f"{method}-{granularity} seed {point['seed']} ratio "
                          f"{point['ratio']:g}: infeasible: {point['infeasible']}", flush=True)
                    continue
                _log_point(cfg, point, tags)
                print(f"{method}-{granularity} seed {point['seed']} ratio {point['ratio']:g}: "
                      f"test {point['test_accuracy_before']:.4f} -> {point['test_accuracy']:.4f}"
                      f" ({point['compression_ratio']:.1f}x of parameters)", flush=True)
    write_json(out, {"method": method, "granularity": granularity, "points": points})


def _log_point(cfg: Config, point: dict[str, Any], tags: dict[str, str]) -> None:
    name = f"{point['method']}-{point['granularity']}-r{point['ratio']:g}-s{point['seed']}"
    params = {**tracking.run_params(cfg, point["method"], point["granularity"],
                                    point["target_sparsity"], finetune_settings(cfg),
                                    point["seed"]),
              "ratio": point["ratio"]}
    with tracking.stage_run("", name, tags, params, nested=True):
        tracking.log_record(point, skip={"ratio", "seed", "target_sparsity"})
