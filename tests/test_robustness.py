"""Mistakes cost a clear message, not a traceback, a hang or a wrong result."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from prunelab.config import ConfigError, parse_config

from helpers import copy_project, run, small_params

ROOT = Path(__file__).resolve().parents[1]
BASE = yaml.safe_load((ROOT / "params.yaml").read_text())

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                    st.floats(allow_nan=True), st.text(max_size=12))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)),
    max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(values)
def test_random_yaml_documents_give_only_config_errors(doc: object) -> None:
    try:
        parse_config(yaml.safe_load(yaml.safe_dump(doc)))
    except ConfigError as exc:
        assert str(exc).startswith("params.yaml")


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(BASE)), st.data())
def test_random_values_in_real_params_give_only_config_errors(section: str, data) -> None:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    if isinstance(raw[section], dict):
        key = data.draw(st.sampled_from(sorted(raw[section])))
        raw[section][key] = data.draw(values)
        where = f"{section}.{key}"
    else:
        raw[section] = data.draw(values)
        where = section
    try:
        parse_config(raw)
    except ConfigError as exc:
        assert where in str(exc), (where, str(exc))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_tracking_server_fails_fast_naming_it(tmp_path: Path, mirror: Path) -> None:
    proj = copy_project(tmp_path, small_params(mirror))
    run(["prunelab", "download"], proj)
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    start = time.monotonic()
    proc = run(["prunelab", "train", "--out-dir", "models/m",
                "--metrics-out", "metrics/m.json"], proj, MLFLOW_TRACKING_URI=uri,
               _EXPECT_FAIL="1")
    elapsed = time.monotonic() - start
    assert proc.returncode == 1, proc.stderr
    assert uri in proc.stderr and "Traceback" not in proc.stderr
    assert elapsed < 30, elapsed  # seconds, not minutes of retries (includes imports)
    # Nothing written: neither of the stage's own outputs (the copy also holds the
    # project's committed metrics, so the folders themselves may exist).
    assert not (proj / "models/m").exists()
    assert not (proj / "metrics/m.json").exists()


def test_a_real_mlflow_server_on_postgres_gets_what_the_default_store_gets(
    tmp_path: Path, mirror: Path, request
) -> None:
    """`mlflow server` (PostgreSQL backend store, local artifact root) started here; the
    train stage logs params, per-epoch metrics and the model to it."""
    import os
    import subprocess
    import sys
    import urllib.request
    import uuid

    import sqlalchemy

    pg_url = request.getfixturevalue("pg_url")
    db = f"prunelab_mlflow_{uuid.uuid4().hex[:8]}"  # its own database: MLflow and Optuna
    admin = sqlalchemy.create_engine(pg_url, isolation_level="AUTOCOMMIT")  # both use alembic
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f"CREATE DATABASE {db}"))
    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1",
         "--port", str(port), "--backend-store-uri", pg_url.rsplit("/", 1)[0] + f"/{db}",
         "--artifacts-destination", str(tmp_path / "artifacts"), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"{uri}/health", timeout=2)
                break
            except OSError:
                assert time.monotonic() < deadline, "mlflow server did not come up in 90 s"
                time.sleep(0.5)
        (tmp_path / "proj").mkdir()
        proj = copy_project(tmp_path / "proj", small_params(mirror, **{"sweep.seeds": [0]}))
        run(["prunelab", "download"], proj)
        run(["prunelab", "train", "--out-dir", "models/m",
             "--metrics-out", "metrics/m.json"], proj, MLFLOW_TRACKING_URI=uri)

        from mlflow.tracking import MlflowClient

        client = MlflowClient(uri)
        exp = client.get_experiment_by_name("mlp")
        (found,) = client.search_runs([exp.experiment_id])
        metrics = yaml.safe_load((proj / "metrics/m.json").read_text())
        assert found.data.metrics["test_accuracy"] == metrics["test_accuracy"]
        assert found.data.params["train.lr"] == str(BASE["train"]["lr"])
        assert len(client.get_metric_history(found.info.run_id, "val_accuracy")) == 3
        assert len(client.search_logged_models([exp.experiment_id])) == 1
        assert any((tmp_path / "artifacts").rglob("MLmodel"))  # stored behind the server
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)"))


def test_a_writer_killed_midway_leaves_the_previous_file_whole(tmp_path: Path) -> None:
    import subprocess
    import sys

    from prunelab.plumbing.fileio import write_json

    target = tmp_path / "metrics.json"
    write_json(target, {"accuracy": 0.9})
    before = target.read_bytes()
    code = (
        "import os, signal; from prunelab.plumbing.fileio import atomic_path\n"
        f"with atomic_path({str(target)!r}) as tmp:\n"
        "    tmp.write_text('{\"accuracy\": 0.')\n"  # half a file ...
        "    os.kill(os.getpid(), signal.SIGKILL)\n"  # ... and a real SIGKILL
    )
    proc = subprocess.run([sys.executable, "-c", code])
    assert proc.returncode == -9
    assert target.read_bytes() == before  # the previous output is whole
    assert len(list(tmp_path.glob(".metrics.json.*.tmp"))) == 1  # the killed writer's temp
    write_json(target, {"accuracy": 0.95})
    assert not list(tmp_path.glob("*.tmp")) and "0.95" in target.read_text()


def test_a_stage_killed_midway_keeps_previous_outputs_then_repro_completes(
    tmp_path: Path, mirror: Path
) -> None:
    import os
    import signal
    import subprocess
    import sys

    proj = copy_project(tmp_path, small_params(mirror))
    run(["dvc", "repro", "train"], proj)
    outputs = [*sorted((proj / "models/seeds").iterdir()), proj / "metrics/baseline.json"]
    before = [p.read_bytes() for p in outputs]

    # A change that makes training run half a minute (30 epochs of 55k images), killed
    # with SIGKILL (dvc and the stage command) a few seconds into it.
    long = small_params(mirror, **{"data.train_limit": None, "train.epochs": 30})
    (proj / "params.yaml").write_text(yaml.safe_dump(long, sort_keys=False))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    repro = subprocess.Popen(["dvc", "repro", "train"], cwd=proj, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             start_new_session=True)
    assert repro.stdout is not None
    for line in repro.stdout:  # wait until the stage command is running
        if line.startswith("> prunelab train"):
            break
    time.sleep(6.0)
    assert repro.poll() is None, "the stage finished before it could be killed"
    os.killpg(repro.pid, signal.SIGKILL)
    repro.wait()

    assert [p.read_bytes() for p in outputs] == before  # previous outputs whole
    assert not list(proj.rglob(".*.tmp"))
    (proj / "params.yaml").write_text(yaml.safe_dump(small_params(mirror, **{
        "train.epochs": 2}), sort_keys=False))
    run(["dvc", "repro", "train"], proj)  # completes cleanly after the kill
    assert [p.read_bytes() for p in outputs] != before
    assert "changed" not in run(["dvc", "status", "train"], proj).stdout


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_random_params_text_gives_only_config_errors(text: str) -> None:
    import tempfile

    from prunelab.config import load_config

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "params.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            load_config(path)
        except ConfigError as exc:
            assert str(path) in str(exc)
