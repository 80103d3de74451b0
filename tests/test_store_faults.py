"""The shared stores survive their faults, on a real PostgreSQL: the sweep's connections
cut mid-run (what a database restart, a failover or a pooler's timeout does) cost a
retry, and the sweep's points are an undisturbed run's, bit for bit; a store that stays
away longer than the retry time stops the stage with one line, and the next run computes
only what was not done. The same for MLflow's store.

Each test has databases of its own, so that cutting and refusing connections touches
nothing else on the server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import optuna
import pytest
import sqlalchemy
import yaml
from optuna.trial import TrialState

from prunelab.config import parse_config

from helpers import copy_project, run, small_params

COLLECT = ["prunelab", "sweep", "--baselines", "models/seeds", "--out-dir", "sweep",
           "--workers", "2"]
RETRY_S = 6  # optuna.retry_s and mlflow.retry_s here


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, mirror: Path) -> Path:
    params = small_params(mirror, **{
        "prune.methods": ["magnitude", "random"], "prune.calibration_batches": 4,
        "finetune.epochs": 1, "sweep.ratios": [2, 4, 8], "sweep.seeds": [0, 1],
        "optuna.heartbeat_s": 3, "optuna.retry_s": RETRY_S, "mlflow.retry_s": RETRY_S})
    proj = copy_project(tmp_path_factory.mktemp("faults"), params)
    run(["dvc", "repro", "train"], proj)
    return proj


@pytest.fixture(scope="module")
def undisturbed(project: Path) -> dict[str, object]:
    """The sweep's files from one run on the default stores (journal file, SQLite)."""
    run(COLLECT, project)
    return outputs(project)


def outputs(proj: Path) -> dict[str, object]:
    return {p.name: json.loads(p.read_text()) for p in sorted((proj / "sweep").glob("*.json"))}


class Server:
    """The test server's admin connection (database `test`), which no fault touches."""

    def __init__(self, url: str) -> None:
        self.url = sqlalchemy.engine.make_url(url)
        self.engine = sqlalchemy.create_engine(url, isolation_level="AUTOCOMMIT",
                                               poolclass=sqlalchemy.pool.NullPool)

    def sql(self, text: str, **kw: object) -> list[tuple[object, ...]]:
        with self.engine.connect() as conn:
            result = conn.execute(sqlalchemy.text(text), kw)
            return list(result) if result.returns_rows else []

    def cut(self, db: str) -> int:
        """Terminate every session of `db`: the statement of issue 40."""
        return len(self.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE datname = :db AND pid <> pg_backend_pid()", db=db))

    def refuse(self, db: str, refused: bool) -> None:
        """Stop (or start again) accepting connections to `db`, even a superuser's."""
        self.sql(f'ALTER DATABASE "{db}" ALLOW_CONNECTIONS {str(not refused).lower()}')
        if refused:
            self.cut(db)

    def count(self, db: str, query: str) -> int:
        engine = sqlalchemy.create_engine(self.url.set(database=db),
                                          poolclass=sqlalchemy.pool.NullPool)
        try:
            with engine.connect() as conn:
                return int(conn.execute(sqlalchemy.text(query)).scalar() or 0)
        except sqlalchemy.exc.SQLAlchemyError:  # no tables yet, or refused
            return 0
        finally:
            engine.dispose()


Database = Callable[[], tuple[str, str]]  # a new database: (its name, its URL)


@pytest.fixture
def server(pg_url: str) -> Iterator[tuple[Server, Database]]:
    """The server, and a maker of databases of this test's own (dropped afterwards)."""
    server, made = Server(pg_url), []

    def database() -> tuple[str, str]:
        name = f"prunelab_faults_{uuid.uuid4().hex[:10]}"
        server.sql(f'CREATE DATABASE "{name}"')
        made.append(name)
        return name, server.url.set(database=name).render_as_string(hide_password=False)

    yield server, database
    for name in made:
        server.refuse(name, False)
        server.cut(name)
        server.sql(f'DROP DATABASE IF EXISTS "{name}"')
    server.engine.dispose()


TOTAL = 2 * 2 * 3 * 2 + 2 * (1 + 3)  # methods x granularities x ratios x seeds, controls
COMPLETE = "SELECT count(*) FROM trials WHERE state = 'COMPLETE'"
LOGGED = "SELECT count(*) FROM tags WHERE key = 'sweep.point'"


def when(server: Server, db: str, query: str, at_least: int, proc: subprocess.Popen[str],
         deadline_s: float = 300) -> None:
    """Wait until `query` on `db` counts `at_least` (the sweep is under way)."""
    end = time.monotonic() + deadline_s
    while server.count(db, query) < at_least:
        assert proc.poll() is None, "the sweep ended before the fault: " + proc.stdout.read()
        assert time.monotonic() < end
        time.sleep(0.1)


def start(project: Path, **env: str) -> subprocess.Popen[str]:
    full = {**os.environ, **env, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    return subprocess.Popen(COLLECT, cwd=project, env=full, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def sweep_study(project: Path, storage: str) -> optuna.Study:
    from prunelab.study.sweep import study_name

    cfg = parse_config(yaml.safe_load((project / "params.yaml").read_text()))
    return optuna.load_study(study_name=study_name(cfg), storage=storage)


def computed_once(study: optuna.Study) -> list[str]:
    """The keys of the points computed into the study; each must be there once."""
    keys = [t.user_attrs["queued"] for t in study.get_trials(states=(TrialState.COMPLETE,
                                                                      TrialState.PRUNED))]
    assert len(keys) == len(set(keys)), "a point was computed into the study twice"
    return keys


def cut_while_running(server: Server, db: str, query: str, proc: subprocess.Popen[str]
                      ) -> int:
    """Cut `db`'s sessions every 50 ms for 3 s, three times as the sweep goes on."""
    cuts = 0
    for at_least in (2, 8, 14):
        when(server, db, query, at_least, proc)
        end = time.monotonic() + 3
        while time.monotonic() < end and proc.poll() is None:
            cuts += server.cut(db)
            time.sleep(0.05)
    return cuts


def outage(server: Server, db: str, proc: subprocess.Popen[str], store: str) -> str:
    """Refuse `db` until the sweep gives up (the retry time, a point, the heartbeat);
    check it said so in one line, with no traceback before it; that line."""
    server.refuse(db, True)
    try:
        out, _ = proc.communicate(timeout=120)
    finally:
        server.refuse(db, False)
    # The stage's line is the last one: nothing (MLflow's exit handler ending its run on
    # the lost store, a worker) prints after it.
    last = out.strip().splitlines()[-1]
    assert proc.returncode == 1, out
    assert last.startswith(f"prunelab sweep: lost the {store} at "
                           f"{server.url.set(database=db)} for {RETRY_S} s"), out
    assert f"run `{' '.join(COLLECT)}`" in last and "points are done" in last, last
    assert "Traceback" not in out, out
    return last


Started = tuple[Server, str, str, "subprocess.Popen[str]"]


@pytest.fixture
def on_postgres(project: Path, server: tuple[Server, Database]) -> Started:
    """The sweep started on a study storage of its own: (server, database, URL, process)."""
    db, url = server[1]()
    return server[0], db, url, start(project, PRUNELAB_OPTUNA_STORAGE=url)


def test_the_sweep_rides_out_cut_connections_and_gives_an_undisturbed_runs_points(
    project: Path, undisturbed: dict[str, object], on_postgres: Started
) -> None:
    pg, db, url, proc = on_postgres
    cuts = cut_while_running(pg, db, COMPLETE, proc)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    assert cuts >= 3
    assert f"lost the study storage at {pg.url.set(database=db)}" in out, out
    assert "retrying in 1 s, 1 of" in out and "Traceback" not in out, out
    assert outputs(project) == undisturbed
    assert len(computed_once(sweep_study(project, url))) == TOTAL


def test_a_study_storage_gone_past_the_retry_time_stops_in_one_line_then_resumes(
    project: Path, undisturbed: dict[str, object], on_postgres: Started
) -> None:
    pg, db, url, proc = on_postgres
    when(pg, db, COMPLETE, 4, proc)
    outage(pg, db, proc, "study storage")
    done = computed_once(sweep_study(project, url))
    again = run(COLLECT, project, PRUNELAB_OPTUNA_STORAGE=url)
    # Waiting now: what was not done, less the points that were running when the store
    # went (their trials wait for the heartbeat's grace period, then run).
    to_compute = int(again.stdout.split(f"{TOTAL} points, ")[1].split(" to compute")[0])
    assert 0 < to_compute <= TOTAL - len(done), again.stdout
    assert outputs(project) == undisturbed
    after = computed_once(sweep_study(project, url))  # none computed twice
    assert len(after) == TOTAL and set(done) <= set(after)


def test_mlflow_on_postgres_rides_out_cuts_then_a_long_outage_logs_each_point_once(
    project: Path, undisturbed: dict[str, object], server: tuple[Server, Database]
) -> None:
    import mlflow
    from mlflow.tracking import MlflowClient

    pg, database = server
    db, url = database()
    env = {"MLFLOW_TRACKING_URI": url, "PRUNELAB_OPTUNA_STORAGE": database()[1]}
    proc = start(project, **env)
    cut_while_running(pg, db, LOGGED, proc)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    assert f"lost the tracking store at {pg.url.set(database=db)}" in out, out

    def point_runs() -> list[str]:
        client = MlflowClient(url)
        found = client.search_runs([client.get_experiment_by_name("mlp-sweep").experiment_id],
                                   "tags.`sweep.point` != ''", max_results=1000)
        return [r.data.tags["sweep.point"] for r in found if r.info.status == "FINISHED"]

    assert sorted(point_runs()) == sorted(set(point_runs())) and len(point_runs()) == TOTAL
    # Gone for longer than the retry time while it logs: one line; a rerun logs the rest.
    mlflow.set_tracking_uri(url)
    client = MlflowClient(url)
    for r in client.search_runs([client.get_experiment_by_name("mlp-sweep").experiment_id]):
        client.delete_run(r.info.run_id)  # as if never logged: the next run logs them all
    proc = start(project, **env)
    when(pg, db, LOGGED, TOTAL + 5, proc)  # the deleted runs' tags stay until gc
    outage(pg, db, proc, "tracking store")
    run(COLLECT, project, **env)
    assert sorted(point_runs()) == sorted(set(point_runs())) and len(point_runs()) == TOTAL
    assert outputs(project) == undisturbed


class _LosesTheAnswer:
    """A real storage whose first call of `name` commits, then loses its connection before
    the answer arrives (the case a plain retry gets wrong: the write is done twice)."""

    def __init__(self, inner: optuna.storages.BaseStorage, name: str) -> None:
        self.inner, self.name, self.lost = inner, name, False

    def __getattr__(self, attr: str) -> object:
        method = getattr(self.inner, attr)
        if attr != self.name or self.lost:
            return method
        # Taking a waiting trial (-> RUNNING) cannot be read back (retrying_storage's
        # docstring): the finishing write is the one tested.

        def landed_then_lost(*args: object) -> object:
            if TrialState.RUNNING in args:
                return method(*args)
            method(*args)
            self.lost = True
            raise sqlalchemy.exc.OperationalError(
                "COMMIT", None, Exception("server closed the connection unexpectedly"))

        return landed_then_lost


@pytest.mark.parametrize("write", ["create_new_trial", "set_trial_state_values",
                                   "create_new_study"])
def test_a_write_whose_answer_was_lost_is_read_back_not_repeated(
    write: str, server: tuple[Server, Database], capsys: pytest.CaptureFixture[str]
) -> None:
    from prunelab.plumbing.retrying_storage import RetryingStorage

    _, url = server[1]()
    real = optuna.storages.RDBStorage(url)
    storage = RetryingStorage(_LosesTheAnswer(real, write), "the test's storage", RETRY_S)
    study = optuna.create_study(study_name="s", storage=storage)
    study.enqueue_trial({"x": 1.0}, user_attrs={"queued": "point-a"})
    trial = study.ask()
    study.tell(trial, 0.5)
    assert "retrying in 1 s, 1 of" in capsys.readouterr().err
    trials = optuna.load_study(study_name="s", storage=url).trials
    assert len(optuna.get_all_study_names(url)) == 1
    assert [(t.user_attrs["queued"], t.state, t.values) for t in trials] == [
        ("point-a", TrialState.COMPLETE, [0.5])]


@pytest.fixture
def tracking_on_postgres(
    server: tuple[Server, Database], monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Server, str]]:
    """MLflow on a fresh PostgreSQL database through the project's retrying store (2 s
    retry time): (the server, the database's name), the database let back in after."""
    import mlflow

    from prunelab.config import MlflowConfig
    from prunelab.plumbing import tracking

    pg, database = server
    db, url = database()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    before = mlflow.get_tracking_uri()
    try:
        tracking.configure(MlflowConfig(tracking_uri="sqlite:///unused.db", retry_s=2))
        yield pg, db
    finally:
        pg.refuse(db, False)
        mlflow.set_tracking_uri(before)


def test_a_store_lost_inside_a_call_of_the_store_is_still_one_store_lost(
    tracking_on_postgres: tuple[Server, str],
) -> None:
    """MLflow's create_run reads the experiment through the same retried store: when that
    inner read gives up, MLflow wraps it in an MlflowException, which the outer retry must
    still report as the store lost (the stage's one line), not as the wrapper's traceback
    (seen in a `make test` on a loaded machine, when an outage began inside create_run)."""
    import mlflow

    from prunelab.plumbing.retry import StoreLost

    pg, db = tracking_on_postgres
    experiment = mlflow.MlflowClient().create_experiment("nested")
    pg.refuse(db, True)
    with pytest.raises(StoreLost, match="lost the tracking store at .* for 2 s"):
        mlflow.MlflowClient().create_run(experiment)


def test_a_tracking_store_given_up_fails_at_once_after(
    tracking_on_postgres: tuple[Server, str],
) -> None:
    """Past the retry time the stage is ending: what calls the store on the way out (the
    run's own end, MLflow's exit handler) must not wait out the retry time again."""
    import mlflow

    from prunelab.plumbing import tracking
    from prunelab.plumbing.retry import StoreLost

    pg, db = tracking_on_postgres
    with pytest.raises(StoreLost, match="lost the tracking store at"):
        with tracking.stage_run("faults", "given-up", {}):
            pg.refuse(db, True)
            mlflow.log_metric("x", 1.0)
    start = time.monotonic()
    with pytest.raises(StoreLost, match="for 2 s"):
        mlflow.MlflowClient().search_experiments()
    assert time.monotonic() - start < 1, "a store given up was retried again"
