"""`prunelab sweep`: the comparison (`prunelab.study.sweep`) — every method × granularity × ratio
× seed — as the queued points of one Optuna study, computed by local worker processes and
by any `prunelab sweep --worker` started on other machines against the same PostgreSQL
storage. The collecting run (`dvc repro`) writes one file of points per method and logs
each point as an MLflow run (nested under one run per method), with the prune stage's
names. A rerun finds finished points in the study.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from pathlib import Path

import optuna

from prunelab.artifacts import baseline_files
from prunelab.config import Config, load_config
from prunelab.data import Split, mnist_digest
from prunelab.methods import RANDOM
from prunelab.models import Net, load_model, resolve_device
from prunelab.plumbing import studies, tracking
from prunelab.plumbing.fileio import atomic_dir, read_json
from prunelab.plumbing.progress import progress
from prunelab.plumbing.retry import StoreLost
from prunelab.prune.settings import sweep_prune_settings
from prunelab.prune.spec import run_params
from prunelab.records import (
    Point,
    as_point,
    in_series,
    is_feasible,
    sweep_series,
    write_points,
)
from prunelab.settings import finetune_settings, test_split, train_settings, train_val_splits
from prunelab.stages import method_tags
from prunelab.study import sweep
from prunelab.study.controls import CONTROLS, DENSE_FT
from prunelab.training import FitSettings
from prunelab.workers import worker_pool


def _load(cfg: Config, files: dict[int, tuple[Path, Path]]
          ) -> tuple[dict[str, Split], dict[int, tuple[Net, float]]]:
    train, val = train_val_splits(cfg)
    device = resolve_device(cfg.device)
    return ({"train": train, "val": val, "test": test_split(cfg)},
            {s: (load_model(m, device), read_json(j)["test_accuracy"])
             for s, (m, j) in files.items()})


class _Worker:
    """One worker process's study and objective (data loaded at its first point)."""

    def __init__(self, params: str, baselines: Path, create: bool = False) -> None:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        cfg = load_config(params)
        files = baseline_files(baselines, cfg.sweep.seeds)
        self.storage = studies.open_storage(cfg)
        self.study = sweep.open_study(cfg, self.storage, create)
        # Every series' settings, and random-neuron's: the scratch control's widths.
        pairs = {(x.method, x.granularity) for x in sweep_series(cfg) if x.method not in CONTROLS}
        self.objective = sweep.PointObjective(
            prune={(m, g): sweep_prune_settings(cfg, m, g)
                   for m, g in pairs | {(RANDOM, "neuron")}},
            finetune=finetune_settings(cfg), training=train_settings(cfg),
            matched_random=cfg.sweep.matched_random, rounds=cfg.finetune.rounds,
            keys={k for k, _, _ in sweep.points(cfg, {s: m for s, (m, _) in files.items()})},
            load=partial(_load, cfg, files))

    def run_one(self) -> bool:
        return studies.run_queued(self.study, self.objective)


def run(cfg: Config, params: Path, baselines: Path, out_dir: Path | None,
        workers: int) -> None:
    """Collect the sweep into `out_dir` (creating and queueing it), or with `out_dir` None
    only compute queued points of one that exists (`--worker`)."""
    files = baseline_files(baselines, cfg.sweep.seeds)  # before any work
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # not a line per trial
    main = _Worker(str(params), baselines, create=out_dir is not None)
    if out_dir is None:
        _help(main, params, baselines, workers, cfg.compute.threads)
        return
    tracking.configure(cfg.mlflow)
    points = sweep.points(cfg, {s: m for s, (m, _) in files.items()})
    studies.reset_orphans(main.study, main.storage)
    # Before queueing: an interrupted run with more seeds or ratios left points this one
    # does not want, and workers take the queue in order.
    withdrawn = studies.withdraw(main.study, main.storage, {k for k, _, _ in points})
    studies.queue(main.study, points)
    log = _PointLog(cfg, main.study.study_name)
    todo = studies.waiting(main.study)
    print(f"sweep study {main.study.study_name}: {len(points)} points, {todo} to compute"
          + (f"; withdrew {withdrawn} queued point(s) these settings do not include"
             if withdrawn else ""), flush=True)
    arrived = 0
    try:
        with worker_pool(_Worker, (str(params), baselines), max(1, min(workers, todo)),
                         cfg.compute.threads) as imap:
            for done_here in progress(imap(studies.one_queued_point, list(range(todo))),
                                      todo, "sweep", "points"):
                if done_here is not None:
                    arrived += 1
                    log.add(*done_here)
        done = studies.wait_for_queue(main.study, main.storage, {k for k, _, _ in points},
                                      cfg.optuna.heartbeat_s, main.run_one)
        arrived = todo  # every point is in the study now; what is left is logging them
        by_key = {k: as_point(done[k].user_attrs["point"], f"sweep point {k}")
                  for k, _, _ in points}
        for k, point in by_key.items():  # computed elsewhere, or by an earlier run
            log.add(k, point)
    except StoreLost as exc:  # the store's name and the command that resumes: the CLI's
        raise StoreLost(f"{exc}; {len(points) - todo + arrived} of {len(points)} points "
                        "are done (at least: other machines' are not counted)") from exc
    with atomic_dir(out_dir) as tmp:  # every series' points, or the previous ones
        for x in sweep_series(cfg):
            mine = sorted((p for p in by_key.values() if in_series(p, x)),
                          key=lambda p: (p["seed"], p["ratio"]))
            write_points(tmp / f"{x.name}.json", x.method, x.granularity, mine)


def _help(w: _Worker, params: Path, baselines: Path, workers: int, threads: int) -> None:
    """--worker: compute queued points until none is waiting."""
    sweep.check_queue(w.study, w.objective.keys)
    total = 0
    while todo := studies.waiting(w.study):
        with worker_pool(_Worker, (str(params), baselines), max(1, min(workers, todo)),
                         threads) as imap:
            total += sum(p is not None for p in progress(
                imap(studies.one_queued_point, list(range(todo))), todo, "sweep worker",
                "points"))
    print(f"sweep study {w.study.study_name}: this worker computed {total} point(s)")


class _PointLog:
    """Each point once as an MLflow run, nested under its series' run, as it arrives. Runs
    carry the study's name and the point's key (tags `sweep.study`, `sweep.point`), so a
    rerun of the same study finds what an earlier one logged and adds only new points
    (a new criterion's), under the same series' runs."""

    def __init__(self, cfg: Config, study: str) -> None:
        self.cfg = cfg
        self.finetune = finetune_settings(cfg)
        self.series = sweep_series(cfg)  # an iterative one apart from its method's main one
        t = train_settings(cfg)  # what `controls.from_scratch` runs
        self.scratch = replace(t, epochs=t.epochs + self.finetune.epochs)
        self.study = study
        found = tracking.runs_tagged(f"{cfg.model}-sweep", "sweep.study", study)
        # A point's run that did not finish (its logging was cut off: a lost store, a
        # killed run) is logged again, not kept beside the new one.
        tracking.delete_runs([r for r in found if "sweep.point" in r.data.tags
                              and r.info.status != "FINISHED"])
        self.logged = {r.data.tags["sweep.point"] for r in found
                       if "sweep.point" in r.data.tags and r.info.status == "FINISHED"}
        self.parents: dict[str, str] = {
            r.data.tags["sweep.series"]: r.info.run_id for r in found
            if "sweep.point" not in r.data.tags and "sweep.series" in r.data.tags}

    def parent(self, series: str, tags: dict[str, str]) -> str:
        if series not in self.parents:
            with tracking.stage_run(f"{self.cfg.model}-sweep", f"sweep-{series}",
                                    {**tags, "sweep.study": self.study,
                                     "sweep.series": series}) as run:
                tracking.log_mnist(self.cfg.data.root, mnist_digest())
            self.parents[series] = run.info.run_id
        return self.parents[series]

    def add(self, key: str, point: Point) -> None:
        m, g, r, s = point["method"], point["granularity"], point["ratio"], point["seed"]
        series = next(x.name for x in self.series if in_series(point, x))
        if key in self.logged:
            return
        self.logged.add(key)
        if not is_feasible(point):
            print(f"{series} seed {s} ratio {r:g}: infeasible: {point['infeasible']}",
                  flush=True)
            return
        # The settings the point ran with (`sweep_point` builds them the same way); a
        # control ran no pruning settings: its fine-tuning's (and training's) and its seed.
        if m in CONTROLS:
            params = {"control": m, "seed": s, "ratio": r, **_ran(
                self.finetune if m == DENSE_FT else self.scratch, m)}
        else:
            ran = sweep.point_settings(
                replace(sweep_prune_settings(self.cfg, m, g), rounds=point["rounds"]), r, s)
            params = {**run_params(ran, self.finetune, s), "ratio": r}
        tags = method_tags(self.cfg, "sweep", m, g)
        # Its numbers go to MLflow; the log says where the sweep is (`progress`).
        tracking.log_child_run(
            self.parent(series, tags), f"{series}-r{r:g}-s{s}",
            {**tags, "sweep.study": self.study, "sweep.point": key}, params,
            {key: v for key, v in point.items()
             if key not in {"ratio", "seed", "target_sparsity", "rounds"}})


def _ran(fit: FitSettings, control: str) -> dict[str, object]:
    """A control's training run as MLflow params: fine-tuning's for dense+ft, the
    baseline's (with the added epochs) for scratch."""
    prefix = "finetune" if control == DENSE_FT else "train"
    return {f"{prefix}.{k}": getattr(fit, k)
            for k in ("lr", "epochs", "lr_schedule", "weight_decay", "penalty")}
