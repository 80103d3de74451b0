"""Optuna storage and queued trials: the plumbing the search and the sweep share.

Storage: a journal file in studies/ by default, or any Optuna RDB URL (PostgreSQL) shared
by workers on many machines. On an RDB a heartbeat marks a killed worker's trial FAILED
and Optuna queues it again (`optuna.retries` times). The journal file has no heartbeat:
there, whoever opens a study marks any RUNNING trial (orphaned by a killed earlier run)
FAILED and queues it again.

Queued trials: the trials of a study are put in its queue (`Study.enqueue_trial`) with
fixed parameters and a fixed seed when it is opened, each under a key (user attr `queued`).
`Study.optimize` takes a waiting trial from the queue atomically (its state moves from
WAITING to RUNNING in one storage update), so any number of workers, in any processes on
any machines, run each trial once, and what a trial computes does not depend on who ran it.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import (
    JournalStorage,
    RDBStorage,
    RetryHeartbeatStaleTrialCallback,
    _CachedStorage,
)
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

from prunelab.config import Config
from prunelab.errors import PrunelabError
from prunelab.plumbing.retry import lost_in, retrying
from prunelab.plumbing.retrying_storage import QUEUED as QUEUED  # re-exported: its home
from prunelab.plumbing.retrying_storage import RetryingStorage
from prunelab.plumbing.stores import mask_url, project_root

JOURNAL = Path("studies/optuna-journal.log")
WITHDRAWN = "withdrawn"  # user attr: failed while waiting because its run no longer wants it
Callback = Callable[[optuna.Study, FrozenTrial], None]


class StorageError(PrunelabError, RuntimeError):
    """The Optuna storage cannot be opened."""


def storage_url(cfg: Config) -> str | None:
    return os.environ.get("PRUNELAB_OPTUNA_STORAGE") or cfg.optuna.storage


def storage_label(cfg: Config) -> str:
    """Where the studies are, for files and messages: never with a password."""
    url = storage_url(cfg)
    return mask_url(url) if url else str(JOURNAL)


def journal_path() -> Path:
    """The default journal, in the main project (see `stores.project_root`). Absolute,
    because Optuna's lock is a symlink to this path: a relative target dangles (it resolves
    from studies/), so a lock left by a killed run would never be seen as stale."""
    return project_root() / JOURNAL


def open_storage(cfg: Config) -> RetryingStorage:
    """The study storage, each of its calls retried for `optuna.retry_s` while the store
    is unreachable (`retrying_storage`). Opening it is not retried: a wrong URL or a
    server that is not there is said in seconds."""
    where = f"the study storage at {storage_label(cfg)}"
    url = storage_url(cfg)
    if not url:
        journal_path().parent.mkdir(parents=True, exist_ok=True)
        journal = JournalStorage(JournalFileBackend(str(journal_path())))
        return RetryingStorage(journal, where, cfg.optuna.retry_s)  # type: ignore[abstract]
    hb = cfg.optuna.heartbeat_s
    # Fail in seconds, not after a driver's default minutes, when the server is not there.
    connect = {"connect_timeout": 5} if url.startswith("postgresql") else {}
    try:
        with warnings.catch_warnings():
            # Heartbeats and their retry callback are marked experimental by Optuna (since
            # 2.8); they are what makes a killed worker's trial run again, so we use them.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            retry = RetryHeartbeatStaleTrialCallback(max_retry=cfg.optuna.retries)
            rdb = RDBStorage(
                url, heartbeat_interval=hb, grace_period=2 * hb,
                heartbeat_stale_trial_callback=retry,
                engine_kwargs={"pool_pre_ping": True, "connect_args": connect},
            )
            # Behind Optuna's cache, as `optuna.create_study(storage=url)` would put it.
            return RetryingStorage(  # type: ignore[abstract]
                _CachedStorage(rdb), where, cfg.optuna.retry_s)
    except Exception as exc:  # SQLAlchemy's, the driver's: all mean "cannot open it"
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise StorageError(
            f"cannot open the Optuna storage {mask_url(url)}: "
            f"{reason.replace(url, mask_url(url))} — fix PRUNELAB_OPTUNA_STORAGE or "
            "optuna.storage in params.yaml") from None


def queue(study: optuna.Study, trials: Iterable[tuple[str, dict[str, Any], dict[str, Any]]]
          ) -> None:
    """Put each (key, params, user attrs) in the study's queue unless a trial with that key
    is already there (a FAILED one does not count: the next run queues it again), so that
    opening a study twice, or after an interrupted open, queues each once."""
    there = {t.user_attrs.get(QUEUED) for t in study.get_trials(deepcopy=False)
             if t.state != TrialState.FAIL}
    for key, params, attrs in trials:
        if key not in there:
            study.enqueue_trial(params, user_attrs={**attrs, QUEUED: key})


def withdraw(study: optuna.Study, storage: RetryingStorage, keep: set[str]) -> int:
    """FAIL every waiting trial whose key is not in `keep`, and say how many. A study's name
    may leave out what only adds trials (the sweep's seeds and ratios), so an interrupted
    run with more of them leaves trials this run does not want; Optuna takes its queue in
    order, so they would all be computed first. `queue` puts a FAILED key back when a later
    run wants it again."""
    stale = [t for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
             if t.user_attrs.get(QUEUED) not in keep]
    for t in stale:
        storage.set_trial_user_attr(t._trial_id, WITHDRAWN, True)
        storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
    return len(stale)


def storage_of(study: optuna.Study) -> optuna.storages.BaseStorage:
    return study._storage  # Optuna has no public accessor; it is what the study writes to


def waiting(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))


class _Objective(Protocol):
    last: Any
    last_key: str | None


class QueueWorker(Protocol):
    """A worker process's study and objective (the sweep's, the when stage's): `run_one`
    runs one queued trial; the objective keeps what it computed (`last`, `last_key`)."""

    objective: _Objective

    def run_one(self) -> bool: ...


def one_queued_point(w: QueueWorker, _: int) -> tuple[str, Any] | None:
    """(its queue key, the point) of one queued point computed by this worker, or None
    (the queue was empty, or the point was computed elsewhere): the function a worker
    pool maps (here, in the plumbing, so that no task's key hashes it)."""
    w.objective.last = w.objective.last_key = None
    w.run_one()
    o = w.objective
    return (o.last_key, o.last) if o.last is not None and o.last_key is not None else None


def run_queued(study: optuna.Study, objective: Callable[[optuna.Trial], Any],
               callbacks: list[Callback] | None = None) -> bool:
    """Run one trial from the study's queue in this process; False if none was waiting."""
    if not waiting(study):
        return False
    taken: list[optuna.Trial] = []

    def queued_only(trial: optuna.Trial) -> Any:
        taken.append(trial)
        # Another worker took the last waiting trial between our look and Optuna's pop, so
        # Optuna made a new one: it computes nothing and is ignored by every reader.
        if QUEUED not in trial.user_attrs:
            raise optuna.TrialPruned("the queue was empty")
        return objective(trial)

    try:
        try:
            study.optimize(queued_only, n_trials=1, catch=(), callbacks=callbacks)
        except Exception as exc:
            # Optuna's clean-up after a failed write reads the trial again; with the store
            # gone that read fails too, and Optuna 5.0 then raises UnboundLocalError.
            lost = lost_in(exc)
            if lost is not None and lost is not exc:
                raise lost from None
            raise
    except (UpdateFinishedTrialError, ValueError) as exc:
        # Optuna says "Cannot tell a FAIL trial" when the heartbeat check failed this
        # trial while it ran (its heartbeat did not reach the store within the grace
        # period: a long outage, or a starved machine) and queued it again: its result
        # is not written, and the queued copy computes it. Anything else is a bug.
        told = isinstance(exc, UpdateFinishedTrialError) or str(exc).startswith("Cannot tell")
        if not (told and taken) or storage_of(study).get_trial(
                taken[0]._trial_id).state != TrialState.FAIL:
            raise
        print(f"trial {taken[0].number} ({taken[0].user_attrs.get(QUEUED)}) of study "
              f"{study.study_name} was failed as stale while it ran here (its heartbeat "
              "did not reach the store in time); it is queued again, and its result comes "
              "from that run", flush=True)
    return True


def reset_orphans(study: optuna.Study, storage: RetryingStorage) -> None:
    """Journal storage has no heartbeat: a RUNNING trial found at start-up was orphaned by a
    killed run. Fail it and queue it again, as the RDB heartbeat callback would."""
    if storage.rdb is not None:
        _fail_stale(study, storage)
        return
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        study.enqueue_trial(t.system_attrs.get("fixed_params", t.params),
                            user_attrs={**t.user_attrs, "retry_of": t.number})


def wait_for_queue(study: optuna.Study, storage: RetryingStorage, keys: set[str],
                   poll_s: float, run_one: Callable[[], bool]) -> dict[str, FrozenTrial]:
    """Until every key has a finished trial (COMPLETE, or PRUNED: stopped by its own rule):
    run waiting trials here (`run_one`), else wait for other machines' workers, failing
    stale trials so that they are queued again. A key whose trials all FAILED with no retry
    left raises."""
    while True:
        trials = study.get_trials(deepcopy=False)
        done = {t.user_attrs[QUEUED]: t for t in trials
                if t.state in (TrialState.COMPLETE, TrialState.PRUNED) and QUEUED in t.user_attrs}
        if keys <= set(done):
            return {k: done[k] for k in keys}
        if run_one():
            continue
        live = {t.user_attrs.get(QUEUED) for t in trials
                if t.state in (TrialState.WAITING, TrialState.RUNNING)}
        lost = sorted(keys - set(done) - live)
        if lost and any(t.user_attrs.get(WITHDRAWN) for t in trials
                        if t.user_attrs.get(QUEUED) == lost[0]):
            raise PrunelabError(f"trial {lost[0]} of study {study.study_name} was withdrawn "
                                "by another run of it with other settings (a run withdraws "
                                "queued trials it does not want): run one at a time, or run "
                                "this command again to queue it again")
        if lost:
            raise RuntimeError(f"{len(lost)} trial(s) of study {study.study_name} failed and "
                               f"are not queued again (first: {lost[0]}); see the worker's "
                               "error, then run the same command again to retry them")
        if storage.rdb is not None:
            _fail_stale(study, storage)
        time.sleep(poll_s)


def _fail_stale(study: optuna.Study, storage: RetryingStorage) -> None:
    """FAIL (and, through the storage's callback, queue again) trials whose worker's
    heartbeat stopped. Experimental in Optuna since 2.9; it is what the heartbeat is for.

    Optuna records a trial's first heartbeat just after a worker takes it from the queue,
    and its stale check skips a RUNNING trial that has none: a worker killed in between
    left a trial that a waiting run waited for forever. Such a trial is given a heartbeat
    here, as if its worker had just beaten: a live worker goes on beating (and Optuna's
    writer ignores the duplicate row), a dead one's trial goes stale after the grace
    period like any other, timed by the database's clock."""
    running = [t._trial_id for t in study.get_trials(deepcopy=False,
                                                      states=(TrialState.RUNNING,))]
    for trial_id in set(running) - _with_heartbeat(storage, running):
        storage.record_heartbeat(trial_id)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def _with_heartbeat(storage: RetryingStorage, trial_ids: list[int]) -> set[int]:
    """Which of these trials have a heartbeat record. Optuna has no public reader of its
    heartbeat table, so this reads it (`trial_heartbeats`, in its schema since 2.8)."""
    if not trial_ids or storage.rdb is None:
        return set()
    import sqlalchemy
    from optuna.storages._rdb.models import TrialHeartbeatModel

    column = TrialHeartbeatModel.__table__.c.trial_id
    engine = storage.rdb.engine

    def read() -> set[int]:
        with engine.connect() as conn:
            return set(conn.execute(sqlalchemy.select(column).where(column.in_(trial_ids)))
                       .scalars())

    return retrying(read, storage.store, storage.retry_s)
