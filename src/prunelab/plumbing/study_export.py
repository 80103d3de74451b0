"""A study's trials as a small, time-free JSON (committed beside the search's choices), and
an Optuna journal rebuilt from it for optuna-dashboard.

A journal or database carries each trial's start and end times and the worker that ran it,
so it changes on every rerun and is not a file to commit; the export keeps what the
dashboard shows of the study (each trial's state, params with their distributions, values,
intermediate values, user and system attributes: its constraints among them) and nothing
that depends on when or where it ran.
A fresh clone skips the search (its committed choices are current), so without this its
studies could not be looked at without recomputing them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import optuna
from optuna.distributions import distribution_to_json, json_to_distribution
from optuna.trial import TrialState

# Who ran a trial: a host and a process id, different on every run.
WHERE = ("worker",)


def export(study: optuna.Study) -> dict[str, Any]:
    """`study`'s trials in order, without times or workers."""
    return {"study": study.study_name,
            "directions": [d.name.lower() for d in study.directions],
            "trials": [{
                "number": t.number, "state": t.state.name, "params": t.params,
                "distributions": {k: distribution_to_json(d)
                                  for k, d in t.distributions.items()},
                "values": t.values,
                "intermediate_values": {str(k): v for k, v in
                                        sorted(t.intermediate_values.items())},
                "user_attrs": {k: v for k, v in sorted(t.user_attrs.items())
                               if k not in WHERE},
                # Optuna's own: the constraint values that decide the Pareto front, the
                # queued trial's fixed params.
                "system_attrs": dict(sorted(t.system_attrs.items()))}
                for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)]}


def rebuild(exports: Iterable[dict[str, Any]], storage: optuna.storages.BaseStorage) -> list[str]:
    """Each exported study in `storage` (replacing one of the same name), trial by trial;
    the studies' names."""
    names = []
    for e in exports:
        try:
            optuna.delete_study(study_name=e["study"], storage=storage)
        except KeyError:  # not there yet
            pass
        study = optuna.create_study(study_name=e["study"], storage=storage,
                                    directions=e["directions"])
        for t in e["trials"]:
            state = TrialState[t["state"]]
            study.add_trial(optuna.trial.create_trial(
                state=state, params=t["params"],
                distributions={k: json_to_distribution(d)
                               for k, d in t["distributions"].items()},
                values=t["values"],
                intermediate_values={int(k): v for k, v in
                                     t["intermediate_values"].items()},
                user_attrs=t["user_attrs"], system_attrs=t["system_attrs"]))
        names.append(e["study"])
    return names
