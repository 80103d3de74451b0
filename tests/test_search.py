"""The Optuna search: validation-only, resumable, and shared by workers on PostgreSQL."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from prunelab.config import parse_config
from prunelab.plumbing.fileio import read_json, write_json

from helpers import copy_project, fit_questions, run, small_params

SEARCH = ["prunelab", "search", "--method", "magnitude", "--granularity", "weight",
          "--baseline", "models/seeds/0.safetensors", "--out-dir", "search"]
CHOICE = "search/magnitude-weight.json"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, mirror: Path) -> Path:
    """A project copy with a trained baseline on a slice."""
    params = small_params(mirror, **{"sweep.seeds": [0], "prune.calibration_batches": 4,
                                     "search.trials": 4,
                                     "search.refine": 0, "finetune.epochs": 1,
                                     "optuna.heartbeat_s": 1})
    proj = copy_project(tmp_path_factory.mktemp("search"), params)
    run(["dvc", "repro", "train"], proj)
    (proj / "params.base.yaml").write_text((proj / "params.yaml").read_text())
    return proj


def with_params(proj: Path, **changes: object) -> None:
    """The fixture's params with `changes`. Each test gets its own study, since the study
    name hashes the params (a distinct search.seed per test)."""
    import yaml

    params = yaml.safe_load((proj / "params.base.yaml").read_text())
    for key, value in changes.items():
        section, leaf = key.split(".")
        params[section][leaf] = value
    if "prune.methods" in changes:
        fit_questions(params)
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def load_study(proj: Path, storage: str | None) -> optuna.Study:
    import yaml

    from prunelab.plumbing.studies import open_storage
    from prunelab.study.search import study_name

    os.chdir(proj)  # the journal path is relative to the project root
    cfg = parse_config(yaml.safe_load((proj / "params.yaml").read_text()))
    store = optuna.storages.RDBStorage(storage) if storage else open_storage(cfg)
    return optuna.load_study(study_name=study_name(cfg, "magnitude", "weight",
                                                   proj / "models/seeds/0.safetensors"),
                             storage=store)


def test_search_meets_the_constraint_without_reading_test(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In-process, so that reading the test split can be made to fail."""
    import yaml

    import prunelab.data
    import prunelab.settings
    from prunelab.stages import search

    def forbidden(*a: object, **k: object) -> None:
        raise AssertionError("the search read the test split")

    monkeypatch.setattr(prunelab.data, "load_test", forbidden)
    monkeypatch.setattr(prunelab.settings, "load_test", forbidden)
    monkeypatch.chdir(project)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{project / 'mlflow.db'}")
    monkeypatch.delenv("PRUNELAB_OPTUNA_STORAGE", raising=False)
    with_params(project, **{"search.seed": 11, "search.trials": 6, "search.refine": 2})
    cfg = parse_config(yaml.safe_load((project / "params.yaml").read_text()))
    search.run(cfg, project / "params.yaml", [("magnitude", "weight")],
               Path("models/seeds/0.safetensors"), Path("search"), workers=1)

    choice = read_json(project / CHOICE)
    assert choice["within_allowed_drop"]
    assert choice["val_accuracy"] >= choice["baseline_val_accuracy"] - 0.005
    study = load_study(project, None)
    finished = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    refined = [t for t in finished if t.user_attrs.get("refine")]
    assert len(finished) == len(study.trials) == 6 + len(refined) and len(refined) <= 2
    for t in refined:  # each bisection lies between a feasible and an infeasible trial
        s = t.user_attrs["sparsity"]
        earlier = [u for u in finished if u.number < t.number and u.state == TrialState.COMPLETE]
        assert any(u.user_attrs["constraint"] <= 0 and u.user_attrs["sparsity"] < s
                   for u in earlier)
        assert any(u.user_attrs["constraint"] > 0 and u.user_attrs["sparsity"] > s
                   for u in earlier)
    # The choice is the sparsest trial within the allowed drop.
    ok = [t for t in finished if t.state == TrialState.COMPLETE
          and t.values[0] >= choice["baseline_val_accuracy"] - 0.005]
    assert choice["realised_sparsity"] == max(t.values[1] for t in ok)

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    exp = client.get_experiment_by_name("mlp-search")
    (parent,) = client.search_runs([exp.experiment_id],
                                   f"tags.mlflow.runName = '{study.study_name}'")
    nested = client.search_runs([exp.experiment_id],
                                f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert len(nested) == len(study.trials)
    assert {"pareto_front.png", "history_val_accuracy.png"} <= {
        a.path for a in client.list_artifacts(parent.info.run_id)}
    assert float(parent.data.params["chosen_sparsity"]) == choice["sparsity"]


def test_rerun_resumes_and_adds_no_trial(project: Path) -> None:
    with_params(project, **{"search.seed": 12, "search.refine": 2})
    run(SEARCH, project)
    first = read_json(project / CHOICE)
    n = len(load_study(project, None).trials)
    trials = (project / CHOICE).parent / "trials" / (project / CHOICE).name
    exported = trials.read_bytes()
    run(SEARCH, project)  # the study is complete: nothing to do, same choice
    assert len(load_study(project, None).trials) == n and 4 <= n <= 6
    assert read_json(project / CHOICE) == first
    assert trials.read_bytes() == exported  # time-free: a rerun leaves git status clean


def test_the_study_s_committed_trials_rebuild_it_for_the_dashboard(project: Path) -> None:
    """The search writes each study's trials without times or workers; the script makes a
    journal of them that optuna-dashboard opens, with the study's trials as they were."""
    from prunelab.plumbing.study_export import export

    with_params(project, **{"search.seed": 13})
    run(SEARCH, project)
    study = load_study(project, None)
    saved = read_json((project / CHOICE).parent / "trials" / (project / CHOICE).name)
    assert saved == json.loads(json.dumps(export(study)))
    assert len(saved["trials"]) == len(study.trials) >= 4
    assert not any("datetime" in k or k == "worker" for t in saved["trials"]
                   for k in [*t, *t["user_attrs"]])
    run([sys.executable, "scripts/search_dashboard.py", "--journal", "dashboard.log"],
        project)
    rebuilt = optuna.load_study(study_name=study.study_name, storage=JournalStorage(
        JournalFileBackend(str(project / "dashboard.log"))))
    assert export(rebuilt) == export(study)
    assert [t.params for t in rebuilt.best_trials] == [t.params for t in study.best_trials]


def wait_for_running(proj: Path, storage: str | None, timeout: float = 120) -> int:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            running = load_study(proj, storage).get_trials(states=(TrialState.RUNNING,))
        except KeyError:  # the study is not created yet
            running = []
        if running:
            return running[0].number
        time.sleep(0.2)
    raise AssertionError("no trial started running in time")


def kill_mid_trial(proj: Path, storage: str | None) -> int:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    if storage:
        env["PRUNELAB_OPTUNA_STORAGE"] = storage
    proc = subprocess.Popen(SEARCH, cwd=proj, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        # At once: on PostgreSQL the trial may not have its first heartbeat yet (the
        # case that once left the rerun waiting forever; tests/test_studies.py makes it
        # every time), or may have it.
        number = wait_for_running(proj, storage)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    return number


@pytest.mark.parametrize("backend", ["postgresql", "journal"])
def test_a_killed_search_resumes_and_its_trial_fails(
    project: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    storage = request.getfixturevalue("pg_url") if backend == "postgresql" else None
    # Long trials, so that the kill lands inside one.
    with_params(project, **{"search.seed": 20 + (backend == "journal"), "finetune.epochs": 30,
                            "search.stop_margin": 0.99})
    killed = kill_mid_trial(project, storage)
    assert load_study(project, storage).trials[killed].state == TrialState.RUNNING
    time.sleep(2.5)  # past the heartbeat's grace period (2 x optuna.heartbeat_s = 2 s)
    env = {"PRUNELAB_OPTUNA_STORAGE": storage} if storage else {}
    run(SEARCH, project, **env)
    study = load_study(project, storage)
    states = [t.state for t in study.trials]
    assert study.trials[killed].state == TrialState.FAIL
    assert TrialState.RUNNING not in states
    # Each of the 4 queued grid trials finished once (the killed ones were run again).
    finished = [t.user_attrs["queued"] for t in study.trials
                if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert sorted(finished) == [f"grid-{i}" for i in range(4)]
    if storage:
        optuna.delete_study(study_name=study.study_name, storage=storage)


# Takes the journal's lock the way a search does (through open_storage) and holds it.
HOLD_JOURNAL_LOCK = """
import time
from prunelab.config import load_config
from prunelab.plumbing.studies import open_storage
open_storage(load_config()).inner._backend._lock.acquire()  # the journal, under the retries
print("held", flush=True)
time.sleep(600)
"""


def test_a_journal_lock_left_by_a_killed_run_is_broken(project: Path) -> None:
    """SIGKILL during a journal write leaves Optuna's lock file behind. The next search must
    break it once Optuna's grace period (30 s) has passed, not wait on it forever."""
    with_params(project, **{"search.seed": 30})
    holder = subprocess.Popen([sys.executable, "-c", HOLD_JOURNAL_LOCK], cwd=project,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    finally:
        holder.kill()
        holder.wait()
    lock = project / "studies/optuna-journal.log.lock"
    assert os.path.lexists(lock)  # stale: its holder is dead
    run(SEARCH, project)  # helpers.run fails it if it is still waiting after 10 min
    assert not os.path.lexists(lock)
    assert read_json(project / CHOICE)["trials_complete"] >= 1


def test_two_workers_on_postgres_give_the_trials_of_one_worker_on_the_journal(
    project: Path, pg_url: str
) -> None:
    """The grid trials are queued with their densities and seeds: two worker processes
    sharing a PostgreSQL study run each once and get what one process gets alone."""
    with_params(project, **{"search.seed": int(uuid.uuid4().int % 10**6), "search.trials": 6,
                            "search.refine": 2, "finetune.epochs": 2})
    run([*SEARCH, "--workers", "2"], project, PRUNELAB_OPTUNA_STORAGE=pg_url)
    shared, two = load_study(project, pg_url), read_json(project / CHOICE)
    try:
        run([*SEARCH, "--workers", "1"], project)  # the journal file: a separate study
        alone, one = load_study(project, None), read_json(project / CHOICE)
        grid = [t for t in shared.trials if t.user_attrs["queued"].startswith("grid-")]
        assert sorted(t.number for t in grid) == list(range(6))  # none lost or doubled
        assert len({t.user_attrs["worker"] for t in grid}) == 2  # both did work

        def results(study: optuna.Study) -> dict[str, tuple]:
            return {t.user_attrs["queued"]: (t.state, t.params["density"], t.values,
                                             t.user_attrs["finetune_seed"])
                    for t in study.trials}

        assert results(shared) == results(alone)
        assert {k: v for k, v in two.items() if k != "storage"} == {
            k: v for k, v in one.items() if k != "storage"}
    finally:
        optuna.delete_study(study_name=shared.study_name, storage=pg_url)


PRUNE = ["prunelab", "prune", "--baseline", "models/seeds/0.safetensors", "--choices", "search",
         "--out-dir", "models/pruned", "--prune-metrics-dir", "metrics/prune",
         "--finetune-metrics-dir", "metrics/finetune"]


def test_the_prune_stage_repeats_the_chosen_trial_with_rounds(project: Path) -> None:
    """A trial runs the procedure the prune stage runs: with 3 prune/fine-tune rounds and a
    cosine schedule, prune + finetune on the chosen sparsity give the trial's val accuracy."""
    with_params(project, **{"search.seed": 40, "search.trials": 3, "finetune.rounds": 3,
                            "finetune.lr_schedule": "cosine", "finetune.epochs": 3})
    run(SEARCH, project)
    choice = read_json(project / CHOICE)
    run([*PRUNE, "--method", "magnitude", "--granularity", "weight"], project)
    tuned = read_json(project / "metrics/finetune/magnitude-weight.json")
    assert tuned["target_sparsity"] == choice["sparsity"]
    assert abs(tuned["val_accuracy"] - choice["val_accuracy"]) <= 0.001


def test_the_prune_stage_recomputes_only_what_moved(project: Path) -> None:
    """One task per method-granularity: a rerun keeps each task whose inputs (its choice,
    the baseline, params, code) and written metrics are unchanged, recomputes one whose
    choice moved or whose metrics a kill left newer than its folder, and drops the outputs
    of a method params.yaml no longer lists."""
    from mlflow.tracking import MlflowClient

    with_params(project, **{"prune.methods": ["magnitude", "random"],
                            "prune.granularities": ["weight"], "search.trials": 2,
                            "search.seed": 41})
    run(["prunelab", "search", "--baseline", "models/seeds/0.safetensors",
         "--out-dir", "search"], project)
    names = ["magnitude-weight", "random-weight"]
    files = {n: [project / f"models/pruned/{n}/finetuned.safetensors",
                 project / f"metrics/prune/{n}.json", project / f"metrics/finetune/{n}.json"]
             for n in names}

    def state() -> dict[str, list[tuple[int, bytes]]]:
        return {n: [(f.stat().st_mtime_ns, f.read_bytes()) for f in fs]
                for n, fs in files.items()}

    def runs() -> int:
        client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
        exp = client.get_experiment_by_name("mlp")
        return len(client.search_runs([exp.experiment_id], "tags.stage = 'prune'"))

    earlier = runs()
    assert "2 to compute" in run(PRUNE, project).stdout
    first = state()
    assert runs() == earlier + 2
    assert "0 to compute, 2 unchanged" in run(PRUNE, project).stdout
    assert state() == first and runs() == earlier + 2
    # random's choice moves: only random runs again.
    choice = read_json(project / "search/random-weight.json")
    write_json(project / "search/random-weight.json", {**choice, "sparsity": 0.6})
    assert "1 to compute, 1 unchanged" in run(PRUNE, project).stdout
    second = state()
    assert second["magnitude-weight"] == first["magnitude-weight"] and runs() == earlier + 3
    assert read_json(files["random-weight"][2])["target_sparsity"] == 0.6
    # A kill after magnitude's metrics were written, before its folder was renamed in.
    files["magnitude-weight"][2].write_text("{}\n")
    assert "1 to compute, 1 unchanged" in run(PRUNE, project).stdout
    third = state()
    assert third["random-weight"] == second["random-weight"]
    assert [b for _, b in third["magnitude-weight"]] == [b for _, b in first["magnitude-weight"]]
    with_params(project, **{"prune.methods": ["magnitude"], "prune.granularities": ["weight"]})
    assert "0 to compute, 1 unchanged" in run(PRUNE, project).stdout
    assert not (project / "models/pruned/random-weight").exists()
    assert sorted(p.name for p in (project / "metrics/prune").iterdir()) == [
        "magnitude-weight.json"]


def test_a_killed_prune_stage_keeps_the_tasks_it_finished(project: Path) -> None:
    """SIGKILL while the second of two tasks runs: the rerun computes that one only, and
    the first's files are the ones the killed run wrote."""
    with_params(project, **{"prune.methods": ["magnitude", "random"],
                            "prune.granularities": ["weight"], "search.trials": 2,
                            "search.seed": 42, "finetune.epochs": 4})
    run(["prunelab", "search", "--baseline", "models/seeds/0.safetensors",
         "--out-dir", "search"], project)
    for d in ("models/pruned", "metrics/prune", "metrics/finetune"):
        shutil.rmtree(project / d, ignore_errors=True)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    proc = subprocess.Popen([*PRUNE, "--workers", "1"], cwd=project, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = project / "models/pruned/magnitude-weight"
    try:
        deadline = time.monotonic() + 300
        while not (first / "inputs.json").exists() and proc.poll() is None:
            assert time.monotonic() < deadline, "the first task never finished"
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not (project / "models/pruned/random-weight").exists(), "killed too late"
    written = {f: f.stat().st_mtime_ns for f in first.iterdir()}
    assert "1 to compute, 1 unchanged" in run(PRUNE, project).stdout
    assert {f: f.stat().st_mtime_ns for f in first.iterdir()} == written
    assert (project / "models/pruned/random-weight/inputs.json").is_file()


def test_a_bad_storage_url_fails_fast_in_one_line_without_its_password(
    project: Path, pg_url: str
) -> None:
    bad = pg_url.replace("postgres@", "postgres:s3cretpw@").rsplit("/", 1)[0] + "/nosuchdb"
    start = time.monotonic()
    proc = run(SEARCH, project, PRUNELAB_OPTUNA_STORAGE=bad, _EXPECT_FAIL="1")
    took = time.monotonic() - start
    assert proc.returncode == 1 and took < 10, (proc.returncode, took)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "nosuchdb" in lines[0] and "***" in lines[0] and "PRUNELAB_OPTUNA_STORAGE" in lines[0]
    assert "s3cretpw" not in proc.stderr + proc.stdout
