"""`prunelab sweep`: the comparison — every method × granularity × ratio × seed — as the
queued trials of one Optuna study, computed by local worker processes and by any
`prunelab sweep --worker` started on other machines against the same PostgreSQL storage.
The collecting run (`dvc repro`) writes one file of points per method and logs each point
as an MLflow run (nested under one run per method), with the finetune stage's names.

Each point is a pure function of its parameters, the params, the code and its seed's
baseline, all of which name the study or the trial's key: a point is computed once, and
every point is the same whoever computed it. A rerun finds finished points in the study.
"""

from __future__ import annotations

import hashlib
import os
import socket
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import optuna

from prunelab import studies, tracking
from prunelab.config import Config, Granularity, Method, load_config
from prunelab.errors import PrunelabError
from prunelab.fileio import atomic_dir, read_json, write_json
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
from prunelab.workers import worker_pool

# The code a point runs (with what it imports from these): its source names the study.
_POINT_CODE = ("criteria.py", "unit_criteria.py", "scoring.py", "masks.py", "surgery.py",
               "pruning.py", "training.py", "models.py", "data.py", "metrics.py", "stats.py",
               "sweep.py", "settings.py", "stages/sweep.py")


def study_name(cfg: Config) -> str:
    """<model>-sweep plus a hash of the params and code a point depends on. Which methods,
    ratios and seeds are swept is not in it: they are in each point's key, so adding one
    queues only the new points."""
    digest = studies.setup_digest(
        cfg, ("model", "device", "data", "train", "prune", "finetune", "sweep", "compute"),
        _POINT_CODE, ignored={"prune": ("methods", "granularities"),
                              "sweep": ("ratios", "seeds")})
    return f"{cfg.model}-sweep-{digest}"


def _points(cfg: Config, files: dict[int, tuple[Path, Path]]) -> list[tuple[str, dict[str, Any],
                                                                             dict[str, Any]]]:
    """Every point as (key, params, user attrs) for the queue; the key names the seed's
    baseline by its content. Granularity by granularity: weight points (the slower ones)
    first when listed first, so that the pool ends on short tasks."""
    digest = {s: hashlib.sha1(m.read_bytes()).hexdigest()[:8] for s, (m, _) in files.items()}
    return [(f"{m}-{g}-r{r:g}-s{s}-{digest[s]}",
             {"method": m, "granularity": g, "ratio": r, "seed": s}, {})
            for g in cfg.prune.granularities for m in cfg.prune.methods
            for s in cfg.sweep.seeds for r in cfg.sweep.ratios]


def _allocates(cfg: Config, granularity: str) -> bool:
    """Whether a criterion chooses how much each layer loses. Where it cannot (one pruned
    layer, or the same fraction of units cut in every layer), random pruning with its
    per-layer sparsity is plain random pruning: the same seeded scores, the same mask."""
    model = build_model(cfg.model)
    if granularity == "weight":
        return len(prunable_names(model, cfg.prune.prune_output_layer)) > 1
    return cfg.sweep.neuron_scope == "global" and len(unit_groups(model)) > 1


class _Sweeper:
    """One worker: the data, every seed's baseline, the study; computes queued points."""

    def __init__(self, params: str, baselines: Path, create: bool = False) -> None:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.cfg = cfg = load_config(params)
        self.files = baseline_files(baselines, cfg.sweep.seeds)
        self.storage = studies.open_storage(cfg)
        name = study_name(cfg)
        if create:
            self.study = optuna.create_study(study_name=name, storage=self.storage,
                                             direction="maximize", load_if_exists=True)
        else:
            try:
                self.study = optuna.load_study(study_name=name, storage=self.storage)
            except KeyError:
                raise PrunelabError(
                    f"no sweep study {name} on {studies.storage_label(cfg)}: start the sweep "
                    "on one machine first (`dvc repro` or `prunelab sweep --out-dir sweep`), "
                    "with the same params.yaml, code and models/seeds as this one") from None
        self._data: tuple[dict[str, Any], dict[int, Any]] | None = None
        self.last: dict[str, Any] | None = None
        self.keys = {k for k, _, _ in _points(cfg, self.files)}  # what this worker can compute
        self.allocates = {g: _allocates(cfg, g) for g in cfg.prune.granularities}

    def check_queue(self) -> None:
        """Refuse, before computing anything, a queue this worker's baselines cannot serve:
        a point's key names its seed's baseline by content, and a point computed from
        another baseline would be filed under the wrong key."""
        queued = {t.user_attrs.get(studies.QUEUED) for t in self.study.get_trials(
            deepcopy=False, states=(optuna.trial.TrialState.WAITING,))}
        foreign = sorted(queued - self.keys - {None})
        if foreign:
            raise PrunelabError(
                f"{len(foreign)} queued point(s) of the sweep (first: {foreign[0]}, the last "
                "part names its seed's baseline by content) need baselines that models/seeds "
                "here does not hold: copy models/seeds from the machine that started the sweep")

    def data(self) -> tuple[dict[str, Any], dict[int, Any]]:
        if self._data is None:  # not in the collector unless it has to compute
            train, val = train_val_splits(self.cfg)
            device = resolve_device(self.cfg.device)
            self._data = ({"train": train, "val": val, "test": test_split(self.cfg)},
                          {s: (load_model(m, device), read_json(j)["test_accuracy"])
                           for s, (m, j) in self.files.items()})
        return self._data

    def objective(self, trial: optuna.Trial) -> float:
        cfg = self.cfg
        # Fixed by the queue; the distributions only declare them (for optuna-dashboard).
        method = trial.suggest_categorical("method", list(Method.__args__))
        granularity = trial.suggest_categorical("granularity", list(Granularity.__args__))
        ratio = trial.suggest_float("ratio", 1.0, 1e9, log=True)
        seed = trial.suggest_int("seed", -(2**31), 2**31 - 1)
        if trial.user_attrs[studies.QUEUED] not in self.keys:  # queued after check_queue
            raise PrunelabError(f"point {trial.user_attrs[studies.QUEUED]} needs other "
                                "baselines than models/seeds here")
        splits, bases = self.data()
        s = prune_settings(cfg, str(method), str(granularity))
        if granularity == "neuron":
            s = replace(s, scope=cfg.sweep.neuron_scope)
        matched = (cfg.sweep.matched_random and method != "random"
                   and self.allocates[str(granularity)])
        with warnings.catch_warnings():  # "cuts nothing" cannot happen for r > 1
            warnings.simplefilter("ignore")
            point = sweep_point(*bases[seed], splits, s, finetune_settings(cfg), ratio, seed,
                                matched)
        trial.set_user_attr("point", point)
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        self.last = point
        if "infeasible" in point:
            raise optuna.TrialPruned(point["infeasible"])
        return point["val_accuracy"]

    def run_one(self) -> bool:
        return studies.run_queued(self.study, self.objective)


def _one_point(w: _Sweeper, _: int) -> dict[str, Any] | None:
    w.last = None
    w.run_one()
    return w.last


def run(cfg: Config, params: Path, baselines: Path, out_dir: Path | None,
        workers: int) -> None:
    """Collect the sweep into `out_dir` (creating and queueing it), or with `out_dir` None
    only compute queued points of one that exists (`--worker`)."""
    files = baseline_files(baselines, cfg.sweep.seeds)  # before any work
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # not a line per trial
    main = _Sweeper(str(params), baselines, create=out_dir is not None)
    if out_dir is None:
        _help(main, params, baselines, workers)
        return
    tracking.configure(cfg.mlflow.tracking_uri)
    points = _points(cfg, files)
    studies.reset_orphans(main.study, main.storage)
    studies.queue(main.study, points)
    log = _PointLog(cfg)
    todo = studies.waiting(main.study)
    print(f"sweep study {main.study.study_name}: {len(points)} points, {todo} to compute",
          flush=True)
    with worker_pool(_Sweeper, (str(params), baselines), max(1, min(workers, todo)),
                     cfg.compute.threads) as imap:
        for point in imap(_one_point, list(range(todo))):
            if point is not None:
                log.add(point)
    done = studies.wait_for_queue(main.study, main.storage, {k for k, _, _ in points},
                                  cfg.optuna.heartbeat_s, main.run_one)
    by_key = {k: done[k].user_attrs["point"] for k, _, _ in points}
    for point in by_key.values():  # computed elsewhere, or by an earlier run
        log.add(point)
    with atomic_dir(out_dir) as tmp:  # every method's points, or the previous ones
        for m in cfg.prune.methods:
            for g in cfg.prune.granularities:
                mine = sorted((p for p in by_key.values()
                               if p["method"] == m and p["granularity"] == g),
                              key=lambda p: (p["seed"], p["ratio"]))
                write_json(tmp / f"{m}-{g}.json", {"method": m, "granularity": g,
                                                   "points": mine})


def _help(w: _Sweeper, params: Path, baselines: Path, workers: int) -> None:
    """--worker: compute queued points until none is waiting."""
    w.check_queue()
    total = 0
    while todo := studies.waiting(w.study):
        with worker_pool(_Sweeper, (str(params), baselines), max(1, min(workers, todo)),
                         w.cfg.compute.threads) as imap:
            total += sum(p is not None for p in imap(_one_point, list(range(todo))))
    print(f"sweep study {w.study.study_name}: this worker computed {total} point(s)")


class _PointLog:
    """Each point once as an MLflow run, nested under its method's run, as it arrives."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.logged: set[tuple[str, str, float, int]] = set()
        self.parents: dict[tuple[str, str], str] = {}

    def parent(self, method: str, granularity: str) -> str:
        if (method, granularity) not in self.parents:
            tags = {"stage": "sweep", "method": method, "granularity": granularity}
            with tracking.stage_run(f"{self.cfg.model}-sweep", f"sweep-{method}-{granularity}",
                                    tags) as run:
                tracking.log_mnist(self.cfg.data.root)
            self.parents[(method, granularity)] = run.info.run_id
        return self.parents[(method, granularity)]

    def add(self, point: dict[str, Any]) -> None:
        m, g, r, s = point["method"], point["granularity"], point["ratio"], point["seed"]
        if (m, g, r, s) in self.logged:
            return
        self.logged.add((m, g, r, s))
        if "infeasible" in point:
            print(f"{m}-{g} seed {s} ratio {r:g}: infeasible: {point['infeasible']}", flush=True)
            return
        params = {**tracking.run_params(self.cfg, m, g, point["target_sparsity"],
                                        finetune_settings(self.cfg), s), "ratio": r}
        tags = {"stage": "sweep", "method": m, "granularity": g}
        tracking.log_child_run(self.parent(m, g), f"{m}-{g}-r{r:g}-s{s}", tags, params,
                               {k: v for k, v in point.items()
                                if k not in {"ratio", "seed", "target_sparsity"}})
        print(f"{m}-{g} seed {s} ratio {r:g}: test {point['test_accuracy_before']:.4f} -> "
              f"{point['test_accuracy']:.4f} ({point['compression_ratio']:.1f}x of parameters)",
              flush=True)
