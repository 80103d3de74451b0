"""Queued trials on a real PostgreSQL storage: what a killed worker leaves behind."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from prunelab.config import parse_config
from prunelab.plumbing import studies

from helpers import ROOT

# The tests take trials with `Study.ask`, as a worker inside `Study.optimize` does, to leave
# them RUNNING in a chosen state; Optuna warns that heartbeats are meant for `optimize`.
pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")


def _storage(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> optuna.storages.BaseStorage:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["optuna"].update(heartbeat_s=1, retries=2)  # grace period 2 s
    monkeypatch.setenv("PRUNELAB_OPTUNA_STORAGE", pg_url)
    return studies.open_storage(parse_config(raw))


def test_a_trial_killed_before_its_first_heartbeat_is_failed_and_run_again(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker killed between taking a trial from the queue and Optuna's first heartbeat
    leaves a RUNNING trial with no heartbeat record, which Optuna's stale check skips. The
    waiting run must fail it after the grace period and run it again, not wait forever."""
    storage = _storage(pg_url, monkeypatch)
    study = optuna.create_study(study_name=f"orphan-{uuid.uuid4().hex[:8]}", storage=storage,
                                directions=["maximize"])
    try:
        studies.queue(study, [("a", {"x": 1.0}, {"seed": 1}), ("b", {"x": 2.0}, {"seed": 2})])
        orphan = study.ask()  # takes "a" from the queue, as a worker does, and never beats
        assert orphan.user_attrs[studies.QUEUED] == "a"

        def objective(trial: optuna.Trial) -> float:
            return trial.suggest_float("x", 0.0, 10.0) * 10

        start = time.monotonic()
        done = studies.wait_for_queue(study, storage, {"a", "b"}, poll_s=0.2,
                                      run_one=lambda: studies.run_queued(study, objective))
        waited = time.monotonic() - start
        assert {k: t.values for k, t in done.items()} == {"a": [10.0], "b": [20.0]}
        assert done["a"].user_attrs["seed"] == 1  # run again as queued: same params, seed
        assert study.trials[orphan.number].state == TrialState.FAIL
        assert 2.0 <= waited < 30  # not before the grace period: it might have been alive
    finally:
        optuna.delete_study(study_name=study.study_name, storage=storage)


def test_a_live_trial_with_its_heartbeat_is_left_running(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other side: a RUNNING trial whose worker beats is never failed by the waiting
    run, however long it runs (here 4 s, twice the grace period)."""
    storage = _storage(pg_url, monkeypatch)
    study = optuna.create_study(study_name=f"live-{uuid.uuid4().hex[:8]}", storage=storage,
                                directions=["maximize"])
    try:
        studies.queue(study, [("a", {"x": 1.0}, {})])
        live = study.ask()
        stop_at = time.monotonic() + 4
        polls = []

        def beat_then_finish() -> bool:  # the worker elsewhere, beating until it is done
            polls.append(1)
            storage.record_heartbeat(live._trial_id)
            if time.monotonic() >= stop_at:
                study.tell(live, 5.0)
            return False

        done = studies.wait_for_queue(study, storage, {"a"}, poll_s=0.2,
                                      run_one=beat_then_finish)
        assert done["a"].number == live.number and done["a"].values == [5.0]
        assert len(study.trials) == 1 and len(polls) >= 10
    finally:
        optuna.delete_study(study_name=study.study_name, storage=storage)


def test_journal_orphans_are_reset_at_start_up(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The journal file has no heartbeat: whoever opens the study fails and re-queues a
    RUNNING trial left by a killed run, keeping its key and seed."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DVC_ROOT", raising=False)  # the journal goes in the cwd
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    monkeypatch.delenv("PRUNELAB_OPTUNA_STORAGE", raising=False)
    storage = studies.open_storage(parse_config(raw))
    study = optuna.create_study(study_name="orphan", storage=storage)
    studies.queue(study, [("a", {"x": 1.0}, {"seed": 7})])
    orphan = study.ask()
    studies.reset_orphans(study, storage)
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING]
    assert trials[1].user_attrs[studies.QUEUED] == "a" and trials[1].user_attrs["seed"] == 7
    assert orphan.number == 0


def test_a_trial_failed_as_stale_while_it_ran_is_left_to_its_queued_copy(
    pg_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A starved or cut-off worker whose heartbeat missed the grace period finds its trial
    FAILED (and queued again by the heartbeat check) when it writes the result: it must
    say so and go on, not stop the stage, and the copy must compute the point."""
    storage = _storage(pg_url, monkeypatch)
    study = optuna.create_study(study_name=f"stale-{uuid.uuid4().hex[:8]}", storage=storage,
                                directions=["maximize"])
    try:
        studies.queue(study, [("point-a", {"x": 1.0}, {})])
        runs: list[int] = []

        def objective(trial: optuna.Trial) -> float:
            runs.append(trial.number)
            if len(runs) == 1:  # what another process's stale check does meanwhile
                storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
                study.enqueue_trial({"x": 1.0}, user_attrs={studies.QUEUED: "point-a"})
            trial.set_user_attr("point", {"x": trial.suggest_float("x", 0, 2)})
            return 1.0

        assert studies.run_queued(study, objective)
        assert "was failed as stale while it ran here" in capsys.readouterr().out
        assert studies.run_queued(study, objective) and not studies.waiting(study)
        states = [(t.user_attrs.get(studies.QUEUED), t.state, "point" in t.user_attrs)
                  for t in study.trials]
        assert states == [("point-a", TrialState.FAIL, False),
                          ("point-a", TrialState.COMPLETE, True)]
    finally:
        optuna.delete_study(study_name=study.study_name, storage=storage)
