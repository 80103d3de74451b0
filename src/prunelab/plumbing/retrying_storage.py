"""An Optuna storage that rides out a lost connection (`retry`): every call Optuna, the
heartbeat thread or prunelab makes goes through one retry loop.

Optuna retries nothing itself: a connection that drops during a commit surfaces as
`StorageInternalError` ("invalid data in the commit"), and the stage dies. A wrapper, not a
subclass, so that the same code serves the RDB storage (behind Optuna's own cache, as
`optuna.create_study` would put it) and the journal file.

Writes whose commit may have landed before the connection dropped are read back first:
a study or a queued trial is not created twice, a trial is not finished twice. One case
cannot be told apart: taking a waiting trial (WAITING -> RUNNING) whose answer was lost
looks the same as another worker having taken it, so it is treated as taken by someone
else; the trial, left RUNNING with no worker, is failed by the heartbeat (or, on the
journal file, by the next collecting run) and queued again: computed once, late.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from typing import Any

from optuna.storages import BaseStorage, RDBStorage, _CachedStorage
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from prunelab.plumbing.retry import StoreLost, retrying

QUEUED = "queued"  # user attr of a queued trial (`studies.QUEUED`)


class RetryingStorage(BaseStorage, BaseHeartbeat):
    """`inner` with each call retried while the store is unreachable, `retry_s` seconds.
    The calls not written out below are made at import (`_plain`), one per method of
    Optuna's storage interface, so that none is left unretried when Optuna adds one."""

    def __init__(self, inner: BaseStorage, store: str, retry_s: float) -> None:
        self.inner, self.store, self.retry_s = inner, store, retry_s

    @property
    def rdb(self) -> RDBStorage | None:
        """The RDB storage underneath, or None (the journal file)."""
        inner = self.inner._backend if isinstance(self.inner, _CachedStorage) else self.inner
        return inner if isinstance(inner, RDBStorage) else None

    def call(self, name: str, *args: Any,
             landed: Callable[[], tuple[bool, Any]] | None = None, **kwargs: Any) -> Any:
        return retrying(lambda: getattr(self.inner, name)(*args, **kwargs), self.store,
                        self.retry_s, landed=landed, reset=self._reset)

    def _reset(self) -> None:
        # The thread's session saw its connection die mid-transaction: drop it, or the
        # next call gets "Can't reconnect until invalid transaction is rolled back".
        if self.rdb is not None:
            self.rdb.scoped_session.remove()

    # Writes that are not idempotent: read back before repeating.
    def create_new_study(self, directions: Sequence[StudyDirection],
                         study_name: str | None = None) -> int:
        def landed() -> tuple[bool, Any]:
            if study_name is None:
                return False, None
            try:
                return True, self.inner.get_study_id_from_name(study_name)
            except KeyError:
                return False, None

        return int(self.call("create_new_study", directions, study_name, landed=landed))

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        attrs = template_trial.user_attrs if template_trial is not None else {}
        key = attrs.get(QUEUED)

        def landed() -> tuple[bool, Any]:
            # `studies.queue` enqueues a key only when no live trial holds it: one that
            # does now is the one this call made.
            if key is None:
                return False, None
            live = [t for t in self.inner.get_all_trials(study_id, deepcopy=False)
                    if t.user_attrs.get(QUEUED) == key and t.state != TrialState.FAIL
                    and t.user_attrs.get("retry_of") == attrs.get("retry_of")]
            return (True, live[-1]._trial_id) if live else (False, None)

        return int(self.call("create_new_trial", study_id, template_trial, landed=landed))

    def set_trial_state_values(self, trial_id: int, state: TrialState,
                               values: Sequence[float] | None = None) -> bool:
        def landed() -> tuple[bool, Any]:
            if state == TrialState.RUNNING:  # see the module's docstring
                return False, None
            t = self.inner.get_trial(trial_id)
            same = values is None or t.values == [float(v) for v in values]
            return (True, True) if t.state == state and same else (False, None)

        return bool(self.call("set_trial_state_values", trial_id, state, values,
                              landed=landed))

    def delete_study(self, study_id: int) -> None:
        def landed() -> tuple[bool, Any]:
            try:
                self.inner.get_study_name_from_id(study_id)
                return False, None
            except KeyError:
                return True, None

        self.call("delete_study", study_id, landed=landed)

    def record_heartbeat(self, trial_id: int) -> None:
        # Optuna's heartbeat thread would die with a traceback, after the stage's own line
        # about the same lost store: a beat that cannot be recorded is only a missed beat.
        try:
            self.call("record_heartbeat", trial_id)
        except StoreLost:
            pass

    # Heartbeats exist only on the RDB storage; the journal file has none.
    def get_heartbeat_interval(self) -> int | None:
        return self.rdb.get_heartbeat_interval() if self.rdb is not None else None


def _plain(name: str) -> Callable[..., Any]:
    """A read, or a write that can be repeated as it is (an attribute set again)."""

    def method(self: RetryingStorage, *args: Any, **kwargs: Any) -> Any:
        return self.call(name, *args, **kwargs)

    method.__name__ = name
    return method


_OWN = set(vars(RetryingStorage))
for _name in [*vars(BaseStorage), *vars(BaseHeartbeat)]:
    if callable(getattr(BaseStorage, _name, None) or getattr(BaseHeartbeat, _name, None)) \
            and not _name.startswith("__") and _name not in _OWN:
        setattr(RetryingStorage, _name, _plain(_name))
abc.update_abstractmethods(RetryingStorage)  # type: ignore[type-abstract]
