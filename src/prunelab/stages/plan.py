"""`prunelab plan`: per stage, the work `dvc repro` would compute and the work it keeps,
in the units of the stages' own progress lines, with an estimate of the time from the last
run's own per-unit times (the studies' trial durations, the truth-measuring time the last
oracle run logged to MLflow). Reads the stores and files; computes and writes nothing.

What it cannot know, it says: before `train` has run there are no baselines to key the
sweep and the oracle by, so all of their work is counted.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from prunelab.config import Config
from prunelab.methods import key, pairs
from prunelab.plumbing import studies
from prunelab.records import sweep_series
from prunelab.stages import oracle
from prunelab.stages.prune import Paths, is_current, task_digest
from prunelab.study import search, sweep, when

DONE = (TrialState.COMPLETE, TrialState.PRUNED)
SEEDS, CHOICES, PRUNED = Path("models/seeds"), Path("search"), Path("models/pruned")


def _study(name: str, storage: optuna.storages.BaseStorage) -> optuna.Study | None:
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return None


def _finished(study: optuna.Study | None) -> list[FrozenTrial]:
    if study is None:
        return []
    return [t for t in study.get_trials(deepcopy=False, states=DONE)
            if studies.QUEUED in t.user_attrs]


def _seconds(trials: Iterable[FrozenTrial]) -> float | None:
    """The median wall time of finished trials (their own, not the waiting in a queue)."""
    took = [(t.datetime_complete - t.datetime_start).total_seconds() for t in trials
            if t.datetime_complete and t.datetime_start]
    return statistics.median(took) if took else None


def _estimate(units: int, each: float | None, workers: int) -> str:
    if not units:
        return ""
    if each is None:
        return " (no earlier run to time it by)"
    return f" (~{timedelta(seconds=round(units * each / workers))} on {workers} worker(s))"


def search_plan(cfg: Config, storage: optuna.storages.BaseStorage, workers: int
                ) -> tuple[str, set[tuple[str, str]]]:
    """The search's line, and the pairs whose study has grid trials left (their choices
    may move)."""
    todo, trials, timed = set(), 0, []
    grid = search.grid_keys(cfg)
    baseline = SEEDS / f"{cfg.seed}.safetensors"
    for pair in pairs(cfg):
        done = (_finished(_study(search.study_name(cfg, *pair, baseline), storage))
                if baseline.is_file() else [])
        timed += done
        missing = len(grid - {t.user_attrs[studies.QUEUED] for t in done})
        if missing:
            todo.add(pair)
            trials += missing + cfg.search.refine
    n = len(pairs(cfg))
    return (f"search: {n} studies, {len(todo)} to compute ({trials} trials at most), "
            f"{n - len(todo)} kept" + _estimate(trials, _seconds(timed), workers)), todo


def prune_plan(cfg: Config, moving: set[tuple[str, str]]) -> str:
    baseline = SEEDS / f"{cfg.seed}.safetensors"
    paths = Paths(baseline, CHOICES, PRUNED, Path("metrics/prune"), Path("metrics/finetune"))
    todo = 0
    for m, g in pairs(cfg):
        choice = paths.of(key(m, g))[0]
        todo += int((m, g) in moving or not baseline.is_file()
                    or not (choice and choice.is_file())
                    or not is_current(paths, key(m, g), task_digest(cfg, m, g, paths)))
    n = len(pairs(cfg))
    return f"prune: {n} tasks, {todo} to compute, {n - todo} kept"


def sweep_plan(cfg: Config, storage: optuna.storages.BaseStorage, workers: int) -> str:
    files = {s: SEEDS / f"{s}.safetensors" for s in cfg.sweep.seeds}
    study = _study(sweep.study_name(cfg), storage)
    done = _finished(study)
    each = _seconds(done)
    if not all(f.is_file() for f in files.values()):
        n = sum(len(x.ratios) for x in sweep_series(cfg)) * len(cfg.sweep.seeds)
        return (f"sweep: {n} points, all to compute (no baselines yet)"
                + _estimate(n, each, workers))
    want = {k for k, _, _ in sweep.points(cfg, files)}
    todo = len(want - {t.user_attrs[studies.QUEUED] for t in done})
    return (f"sweep: {len(want)} points, {todo} to compute, {len(want) - todo} kept"
            + _estimate(todo, each, workers))


def oracle_plan(cfg: Config, workers: int) -> str:
    seeds = cfg.sweep.seeds
    files = {s: SEEDS / f"{s}.safetensors" for s in seeds}
    have = all(f.is_file() for f in files.values())
    kept = [oracle.truth_path(oracle.TRUTH_DIR, cfg, s, files[s]) for s in seeds] if have else []
    kept = [p for p in kept if p.is_file()]
    each = oracle.last_truth_seconds(cfg) if len(kept) < len(seeds) else None
    todo = len(seeds) - len(kept)
    return (f"oracle: {len(seeds)} seeds' truths, {todo} to measure, {len(kept)} kept"
            + _estimate(todo, each, max(1, min(workers, todo)))
            + f"; scores of {len(cfg.prune.methods)} criteria against them")


def when_plan(cfg: Config, storage: optuna.storages.BaseStorage, workers: int) -> str:
    """Pruning at initialisation: its points trained from θ₀, keyed like the sweep's."""
    if not cfg.when.enabled:
        return "when: off (when.enabled is false; dvc exp run -S when.enabled=true runs it)"
    want = {k for k, _, _ in when.points(cfg)}
    done = _finished(_study(when.study_name(cfg), storage))
    todo = len(want - {t.user_attrs[studies.QUEUED] for t in done})
    return (f"when: {len(want)} points, {todo} to compute, {len(want) - todo} kept"
            + _estimate(todo, _seconds(done), workers))


def lines(cfg: Config, workers: int) -> list[str]:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = studies.open_storage(cfg)
    searched, moving = search_plan(cfg, storage, workers)
    missing = sum(not (SEEDS / f"{s}.safetensors").is_file() for s in cfg.sweep.seeds)
    return [f"train: {len(cfg.sweep.seeds)} baselines, {missing} missing here", searched,
            prune_plan(cfg, moving), sweep_plan(cfg, storage, workers), oracle_plan(cfg, workers),
            when_plan(cfg, storage, workers)]


def run(cfg: Config, workers: int) -> None:
    print("\n".join(lines(cfg, workers)), flush=True)
