"""`prunelab when`: pruning at initialisation (`prunelab.study.when`) — every method ×
variant × ratio × seed — as the queued points of one Optuna study, computed by local
worker processes and by any `prunelab when --worker` on other machines sharing the
PostgreSQL storage. The collecting run (`dvc repro`) writes `when/points.json` and logs
each point as an MLflow run of experiment `<model>-when`, nested under one run per method.
With `when.enabled: false` it computes nothing and writes an empty points file, so that the
report leaves its section out. A rerun finds finished points in the study.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import optuna

from prunelab.artifacts import baseline_files
from prunelab.config import Config, load_config
from prunelab.data import Split, mnist_digest
from prunelab.plumbing import studies, tracking
from prunelab.plumbing.fileio import atomic_dir, read_json, write_json
from prunelab.plumbing.progress import progress
from prunelab.plumbing.retry import StoreLost
from prunelab.settings import test_split, train_settings, train_val_splits
from prunelab.study import when
from prunelab.workers import worker_pool

POINTS = "points.json"


def _load(cfg: Config, baselines: Path) -> tuple[dict[str, Split], dict[int, float]]:
    train, val = train_val_splits(cfg)
    files = baseline_files(baselines, cfg.sweep.seeds)
    return ({"train": train, "val": val, "test": test_split(cfg)},
            {s: read_json(j)["test_accuracy"] for s, (_, j) in files.items()})


class _Worker:
    """One worker process's study and objective (data loaded at its first point)."""

    def __init__(self, params: str, baselines: Path, create: bool = False) -> None:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        cfg = load_config(params)
        self.storage = studies.open_storage(cfg)
        self.study = when.open_study(cfg, self.storage, create)
        training, cut = when.settings(cfg, train_settings(cfg))
        self.objective = when.InitObjective(cfg.model, training, cut,
                                            partial(_load, cfg, baselines))

    def run_one(self) -> bool:
        return studies.run_queued(self.study, self.objective)


def run(cfg: Config, params: Path, baselines: Path, out_dir: Path | None,
        workers: int) -> None:
    """Collect the points into `out_dir` (creating and queueing the study), or with
    `out_dir` None only compute queued points of one that exists (`--worker`)."""
    when.check(cfg)
    if not cfg.when.enabled:
        if out_dir is not None:
            with atomic_dir(out_dir) as tmp:
                write_json(tmp / POINTS, {"points": []})
        print("when: when.enabled is false; nothing computed (dvc exp run -S "
              "when.enabled=true computes it)")
        return
    baseline_files(baselines, cfg.sweep.seeds)  # before any work
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    main = _Worker(str(params), baselines, create=out_dir is not None)
    if out_dir is None:
        total = 0
        while todo := studies.waiting(main.study):
            total += sum(p is not None for p in _compute(params, baselines, todo, workers,
                                                         cfg.compute.threads, "when worker"))
        print(f"when study {main.study.study_name}: this worker computed {total} point(s)")
        return
    tracking.configure(cfg.mlflow)
    points = when.points(cfg)
    wanted = {k for k, _, _ in points}
    studies.reset_orphans(main.study, main.storage)
    studies.withdraw(main.study, main.storage, wanted)
    studies.queue(main.study, points)
    log = _PointLog(cfg, main.study.study_name)
    todo = studies.waiting(main.study)
    print(f"when study {main.study.study_name}: {len(points)} points, {todo} to compute",
          flush=True)
    try:
        for done_here in _compute(params, baselines, todo, workers, cfg.compute.threads,
                                  "when"):
            if done_here is not None:
                log.add(*done_here)
        done = studies.wait_for_queue(main.study, main.storage, wanted,
                                      cfg.optuna.heartbeat_s, main.run_one)
    except StoreLost as exc:
        raise StoreLost(f"{exc}; the points done are kept in the study") from exc
    by_key = {k: done[k].user_attrs["point"] for k, _, _ in points}
    for k, point in by_key.items():  # computed elsewhere, or by an earlier run
        log.add(k, point)
    with atomic_dir(out_dir) as tmp:  # every point, or the previous file
        write_json(tmp / POINTS, {"points": [by_key[k] for k, _, _ in points]})


def _compute(params: Path, baselines: Path, todo: int, workers: int, threads: int,
             label: str) -> Iterator[tuple[str, dict[str, Any]] | None]:
    """Compute up to `todo` queued points in worker processes, yielding each as it lands."""
    if not todo:
        return
    with worker_pool(_Worker, (str(params), baselines), max(1, min(workers, todo)),
                     threads) as imap:
        yield from progress(imap(studies.one_queued_point, list(range(todo))), todo, label,
                            "points")


class _PointLog:
    """Each point once as an MLflow run, nested under its method's run, tagged with the
    study and the point's key (`when.study`, `when.point`), so that a rerun logs only the
    points it has not (a new method's)."""

    def __init__(self, cfg: Config, study: str) -> None:
        self.cfg, self.study, self.experiment = cfg, study, f"{cfg.model}-when"
        self.epochs = when.epochs(cfg)
        found = tracking.runs_tagged(self.experiment, "when.study", study)
        tracking.delete_runs([r for r in found if "when.point" in r.data.tags
                              and r.info.status != "FINISHED"])
        self.logged = {r.data.tags["when.point"] for r in found
                       if "when.point" in r.data.tags and r.info.status == "FINISHED"}
        self.parents = {r.data.tags["method"]: r.info.run_id for r in found
                        if "when.point" not in r.data.tags}

    def add(self, key: str, point: dict[str, Any]) -> None:
        if key in self.logged:
            return
        self.logged.add(key)
        m = point["method"]
        tags = {"stage": "when", "procedure": "init", "method": m, "when.study": self.study}
        if m not in self.parents:
            with tracking.stage_run(self.experiment, f"when-{m}", tags) as run:
                tracking.log_mnist(self.cfg.data.root, mnist_digest())
            self.parents[m] = run.info.run_id
        p = self.cfg.prune
        params = {"method": m, "variant": point["variant"], "ratio": point["ratio"],
                  "seed": point["seed"], "epochs": self.epochs, "train.lr": self.cfg.train.lr,
                  "synflow_rounds": self.cfg.when.synflow_rounds,
                  "calibration_batches": p.calibration_batches,
                  "prune_output_layer": p.prune_output_layer}
        tracking.log_child_run(
            self.parents[m], f"when-{m}-{point['variant']}-r{point['ratio']:g}-s{point['seed']}",
            {**tags, "variant": point["variant"], "when.point": key}, params,
            {k: v for k, v in point.items() if k not in {"ratio", "seed", "target_sparsity"}})
