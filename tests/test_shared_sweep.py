"""The sweep as a queue on a shared PostgreSQL study: worker commands started separately
(as on other machines) and the collecting command compute every point exactly once, and
the result is what one process computes alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from prunelab.config import parse_config

from helpers import copy_project, run, small_params

COLLECT = ["prunelab", "sweep", "--baselines", "models/seeds", "--out-dir", "sweep",
           "--workers", "1"]
HELP = ["prunelab", "sweep", "--baselines", "models/seeds", "--worker", "--workers", "1"]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, mirror: Path) -> Path:
    params = small_params(mirror, **{
        "prune.methods": ["magnitude", "random"], "prune.calibration_batches": 4,
        # All 55k training images: a point takes ~1 s, so the helpers join in time.
        "data.train_limit": None, "finetune.epochs": 2, "sweep.ratios": [2, 8],
        "sweep.seeds": [0, 1],
        "prune.seed": int(uuid.uuid4().int % 10**6)})  # a study of its own on the server
    proj = copy_project(tmp_path_factory.mktemp("shared"), params)
    run(["dvc", "repro", "train"], proj)
    return proj


def env(storage: str | None) -> dict[str, str]:
    out = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    out.pop("MLFLOW_TRACKING_URI", None)
    out.pop("PRUNELAB_OPTUNA_STORAGE", None)
    if storage:
        out["PRUNELAB_OPTUNA_STORAGE"] = storage
    return out


def sweep_study(proj: Path, storage: str) -> optuna.Study:
    from prunelab.study.sweep import study_name

    cfg = parse_config(yaml.safe_load((proj / "params.yaml").read_text()))
    return optuna.load_study(study_name=study_name(cfg), storage=storage)


def outputs(proj: Path) -> dict[str, object]:
    return {p.name: json.loads(p.read_text()) for p in sorted((proj / "sweep").glob("*.json"))}


def test_a_worker_without_a_started_sweep_says_what_to_do(project: Path, pg_url: str) -> None:
    proc = run(HELP, project, PRUNELAB_OPTUNA_STORAGE=pg_url, _EXPECT_FAIL="1")
    assert proc.returncode == 1 and "start the sweep on one machine first" in proc.stderr


def test_two_worker_commands_and_the_collector_compute_each_point_once(
    project: Path, pg_url: str
) -> None:
    collector = subprocess.Popen(COLLECT, cwd=project, env=env(pg_url), text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    helpers: list[subprocess.Popen[str]] = []
    try:
        deadline = time.monotonic() + 120
        while True:  # the collector creates the study and queues the points
            try:
                if sweep_study(project, pg_url).get_trials(states=(TrialState.WAITING,)):
                    break
            except KeyError:
                pass
            assert time.monotonic() < deadline and collector.poll() is None
            time.sleep(0.2)
        helpers = [subprocess.Popen(HELP, cwd=project, env=env(pg_url), text=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                   for _ in range(2)]
        out, _ = collector.communicate(timeout=600)
        assert collector.returncode == 0, out
        for h in helpers:
            h_out, _ = h.communicate(timeout=120)
            assert h.returncode == 0, h_out
        shared = outputs(project)
        study = sweep_study(project, pg_url)
        computed = [t for t in study.trials if "point" in t.user_attrs]
        keys = [t.user_attrs["queued"] for t in computed]
        # methods x granularities x ratios x seeds, and the controls: per seed dense+ft
        # once and scratch at each ratio (computed by the same workers).
        assert len(keys) == len(set(keys)) == 2 * 2 * 2 * 2 + 2 * (1 + 2)
        assert all(t.state == TrialState.COMPLETE for t in computed)
        assert len({t.user_attrs["worker"] for t in computed}) == 3  # everyone did work
    finally:
        for p in [collector, *helpers]:
            p.kill()
        optuna.delete_study(study_name=sweep_study(project, pg_url).study_name,
                            storage=pg_url)
    # One process alone, on the default journal file: the same points, bit for bit.
    run(COLLECT, project)
    assert outputs(project) == shared
    assert sorted(len(f["points"]) for f in shared.values()) == [2, 4, 4, 4, 4, 4]


def test_a_worker_with_other_baselines_is_refused_before_computing(
    project: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Points are keyed by their seed's baseline: a helper whose models/seeds differ would
    file its results under keys that are not theirs. It must refuse, having taken none."""
    import torch

    from prunelab.config import load_config
    from prunelab.models import load_model, save_model
    from prunelab.plumbing.studies import open_storage, queue
    from prunelab.study import sweep

    monkeypatch.setenv("PRUNELAB_OPTUNA_STORAGE", pg_url)
    monkeypatch.chdir(project)
    cfg = load_config(project / "params.yaml")
    study = sweep.open_study(cfg, open_storage(cfg), create=True)
    try:
        baselines = {s: project / f"models/seeds/{s}.safetensors" for s in cfg.sweep.seeds}
        queue(study, sweep.points(cfg, baselines))  # queued, not run
        seed1 = project / "models/seeds/1.safetensors"
        kept = seed1.read_bytes()
        model = load_model(seed1)
        with torch.no_grad():
            next(model.parameters()).view(-1)[0] += 1e-3  # as another machine's baseline
        save_model(model, seed1)
        try:
            proc = run(HELP, project, PRUNELAB_OPTUNA_STORAGE=pg_url, _EXPECT_FAIL="1")
        finally:
            seed1.write_bytes(kept)
        assert proc.returncode == 1 and "copy models/seeds" in proc.stderr, proc.stderr
        waiting = study.get_trials(states=(TrialState.WAITING,))
        assert len(waiting) == len(study.trials) == 16 + 6  # none taken (6: controls)
    finally:
        optuna.delete_study(study_name=study.study_name, storage=pg_url)


def test_a_run_with_fewer_seeds_withdraws_the_points_an_interrupted_run_left_queued(
    project: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The study's name leaves the seeds out, so adding seeds reuses points; an interrupted
    run with two seeds leaves both seeds' points queued. A run with one seed must compute
    its own points only (workers take the queue in order), and a later two-seed run must
    queue the withdrawn ones again."""
    from prunelab.config import load_config
    from prunelab.plumbing import studies
    from prunelab.study import sweep

    monkeypatch.setenv("PRUNELAB_OPTUNA_STORAGE", pg_url)
    monkeypatch.chdir(project)
    two = load_config(project / "params.yaml")
    baselines = {s: project / f"models/seeds/{s}.safetensors" for s in two.sweep.seeds}
    storage = studies.open_storage(two)
    try:
        optuna.delete_study(study_name=sweep.study_name(two), storage=pg_url)
    except KeyError:
        pass
    study = sweep.open_study(two, storage, create=True)
    both = sweep.points(two, baselines)
    studies.queue(study, both)  # what the interrupted run left: every point waiting
    kept = (project / "params.yaml").read_text()
    raw = yaml.safe_load(kept)
    raw["sweep"]["seeds"] = [0]
    try:
        (project / "params.yaml").write_text(yaml.safe_dump(raw))
        proc = run(COLLECT, project, PRUNELAB_OPTUNA_STORAGE=pg_url)
    finally:
        (project / "params.yaml").write_text(kept)
    one = [k for k, p, _ in both if p["seed"] == 0]
    assert f"{len(one)} points, {len(one)} to compute; withdrew {len(both) - len(one)}" \
        in proc.stdout, proc.stdout
    trials = sweep_study(project, pg_url).trials
    computed = sorted(t.user_attrs["queued"] for t in trials if "point" in t.user_attrs)
    assert computed == sorted(one)
    withdrawn = [t for t in trials if t.user_attrs.get(studies.WITHDRAWN)]
    assert len(withdrawn) == len(both) - len(one)
    assert all(t.state == TrialState.FAIL for t in withdrawn)
    studies.queue(study, both)  # the two-seed run again: seed 1's points wait once more
    assert studies.waiting(study) == len(both) - len(one)
    optuna.delete_study(study_name=study.study_name, storage=pg_url)
