"""`prunelab search`: every method's Optuna study (`prunelab.study.search`) — the queued grid
trials of all of them, then their bisection steps — in local worker processes that share
the studies (with any other machine's on a PostgreSQL storage); then each choice, written
and logged to MLflow with the study."""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from prunelab.config import Config, load_config
from prunelab.data import mnist_digest
from prunelab.errors import PrunelabError
from prunelab.methods import key, parse
from prunelab.models import load_model, resolve_device
from prunelab.plumbing import studies, study_export, tracking
from prunelab.plumbing.fileio import atomic_dir, write_json
from prunelab.plumbing.progress import progress
from prunelab.records import SearchChoice, write_choice
from prunelab.settings import train_val_splits
from prunelab.stages import method_tags
from prunelab.study import search
from prunelab.study.search import EPOCH_ATTR
from prunelab.workers import worker_pool

Pair = tuple[str, str]  # (method, granularity)
TRIALS = "trials"  # <out-dir>/trials/<method>-<granularity>.json: each study's trials


class _Searcher:
    """One worker's data, baseline and studies; its trials are logged to MLflow under
    each study's run (`parents`)."""

    def __init__(self, params: str, baseline: str, parents: dict[Pair, str]) -> None:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.cfg = load_config(params)
        tracking.configure(self.cfg.mlflow)
        self.storage = studies.open_storage(self.cfg)
        self.train, self.val = train_val_splits(self.cfg)  # never the test split
        self.baseline = Path(baseline)
        self.base = load_model(self.baseline, resolve_device(self.cfg.device))
        self.parents = parents
        self._objectives: dict[Pair, search.Objective] = {}
        self._studies: dict[Pair, optuna.Study] = {}

    def study(self, pair: Pair) -> optuna.Study:
        if pair not in self._studies:  # opened (and its queue checked) once per worker
            self._studies[pair] = search.open_study(self.cfg, *pair, self.storage,
                                                    self.baseline)
        return self._studies[pair]

    def objective(self, pair: Pair) -> search.Objective:
        if pair not in self._objectives:
            self._objectives[pair] = search.objective(self.cfg, *pair, self.base, self.train,
                                                      self.val)
        return self._objectives[pair]

    def loggers(self, pair: Pair) -> list[studies.Callback]:
        return [trial_logger(self.cfg, self.parents[pair], *pair)]


def _grid_trial(w: _Searcher, pair: Pair) -> None:
    studies.run_queued(w.study(pair), w.objective(pair), w.loggers(pair))


def _refine(w: _Searcher, pair: Pair) -> None:
    search.refine(w.cfg, w.study(pair), w.objective(pair), w.loggers(pair))


def run(cfg: Config, params: Path, pairs: list[Pair], baseline: Path, out_dir: Path,
        workers: int) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # not a line per opened study
    if not baseline.is_file():  # the study names hash its bytes
        raise PrunelabError(f"missing baseline {baseline}; run `dvc repro train` first")
    # Both stores are checked before any work; the Optuna storage first, since a bad URL
    # there should cost seconds, not MLflow's start-up as well.
    storage = studies.open_storage(cfg)
    tracking.configure(cfg.mlflow)
    opened = {pair: search.open_study(cfg, *pair, storage, baseline) for pair in pairs}
    for study in opened.values():
        studies.reset_orphans(study, storage)
    parents = {pair: parent_run(cfg, study, *pair) for pair, study in opened.items()}
    grid = [pair for pair, study in opened.items() for _ in range(studies.waiting(study))]
    fresh = sum(studies.waiting(study) > 0 for study in opened.values())
    print(f"search: {len(pairs)} studies, {fresh} to compute ({len(grid)} grid trials)"
          + (f", {len(pairs) - fresh} done (kept)" if fresh < len(pairs) else ""), flush=True)
    workers = max(1, min(workers, max(len(grid), len(pairs))))
    local: list[_Searcher] = []  # built only if this process must run a trial itself

    def here() -> _Searcher:
        if not local:
            local.append(_Searcher(str(params), str(baseline), parents))
        return local[0]

    with worker_pool(_Searcher, (str(params), str(baseline), parents), workers,
                     cfg.compute.threads) as imap:
        for _ in progress(imap(_grid_trial, grid), len(grid), "search", "grid trials"):
            pass
        for pair, study in opened.items():  # other machines' workers may still be at it
            def run_here(p: Pair = pair, s: optuna.Study = study) -> bool:
                return studies.run_queued(s, here().objective(p), here().loggers(p))

            studies.wait_for_queue(study, storage, search.grid_keys(cfg), cfg.optuna.heartbeat_s,
                                   run_here)
        if cfg.search.refine and cfg.search.finetune_lr is None:
            for _ in progress(imap(_refine, pairs), len(pairs), "search", "studies refined"):
                pass
    choices, exports = {}, {}
    for pair in pairs:
        study = search.open_study(cfg, *pair, storage, baseline)
        exports[pair] = study_export.export(study)
        choices[pair] = choice = search.choose(study, cfg.search.max_accuracy_drop,
                                               studies.storage_label(cfg))
        log_choice(parents[pair], study, choice)
        print(f"{key(*pair)}: chose sparsity {choice.sparsity:.4f} "
              f"(val {choice.val_accuracy:.4f}) from {choice.trials_complete} trials "
              f"of study {study.study_name}")
    with atomic_dir(out_dir) as tmp:  # every choice, or the previous ones
        (tmp / TRIALS).mkdir()
        for path in [*out_dir.glob("*.json"), *out_dir.glob(f"{TRIALS}/*.json")
                     ] if out_dir.is_dir() else []:
            if parse(path.stem) not in choices:  # another method's, by hand
                shutil.copy2(path, tmp / path.relative_to(out_dir))
        for pair, choice in choices.items():
            write_choice(tmp / f"{key(*pair)}.json", choice)
            # Its study's trials, time-free: `scripts/search_dashboard.py` rebuilds a
            # journal from them for optuna-dashboard in a clone that skipped the search.
            write_json(tmp / TRIALS / f"{key(*pair)}.json", exports[pair])


def parent_run(cfg: Config, study: optuna.Study, method: str, granularity: str) -> str:
    """The study's MLflow run, created before its first trial; a rerun of the same study
    (resumed, or already complete) finds it by its tag instead of adding another."""
    import mlflow

    experiment = f"{cfg.model}-search"
    found = mlflow.search_runs([tracking.experiment_id(experiment)], output_format="list",
                               filter_string=f"tags.`optuna.study` = '{study.study_name}'")
    if found:
        return str(found[0].info.run_id)
    params = {"method": method, "granularity": granularity, "study": study.study_name,
              "trials": cfg.search.trials, "max_accuracy_drop": cfg.search.max_accuracy_drop}
    tags = {**method_tags(cfg, "search", method, granularity), "optuna.study": study.study_name}
    with tracking.stage_run(experiment, study.study_name, tags, params) as run:
        tracking.log_mnist(cfg.data.root, mnist_digest())
        return str(run.info.run_id)


def trial_logger(cfg: Config, parent_run_id: str, method: str,
                 granularity: str) -> Callable[[optuna.Study, FrozenTrial], None]:
    """An Optuna callback: each finished trial becomes a run nested under the study's, its
    val accuracy logged per fine-tuning epoch (step 0 = right after pruning)."""
    import mlflow

    experiment = f"{cfg.model}-search"

    def log(study: optuna.Study, trial: FrozenTrial) -> None:
        tags = {**method_tags(cfg, "search", method, granularity), "state": trial.state.name}
        with tracking.stage_run(experiment, f"trial-{trial.number}", tags,
                                {**trial.params, "trial": trial.number}, nested=True,
                                parent_run_id=parent_run_id):
            for key, value in trial.user_attrs.items():
                if key.startswith(EPOCH_ATTR):
                    mlflow.log_metric("val_accuracy", value, step=int(key[len(EPOCH_ATTR):]))
                elif isinstance(value, float) and key != "constraint":
                    mlflow.log_metric(key, value)
            if trial.values:
                mlflow.log_metric("sparsity", trial.values[1])

    return log


def log_choice(parent_run_id: str, study: optuna.Study, choice: SearchChoice) -> None:
    """The choice and Optuna's plots, on the study's run."""
    import matplotlib

    matplotlib.use("Agg")
    import mlflow
    from optuna.visualization import matplotlib as vis

    with mlflow.start_run(run_id=parent_run_id):
        mlflow.log_params({"chosen_sparsity": choice.sparsity, "chosen_trial": choice.trial})
        mlflow.log_metrics({"chosen_val_accuracy": choice.val_accuracy,
                            "chosen_realised_sparsity": choice.realised_sparsity})
        plots: dict[str, Callable[[], Any]] = {
            "pareto_front.png": lambda: vis.plot_pareto_front(study),
            "history_val_accuracy.png": lambda: vis.plot_optimization_history(
                study, target=lambda t: t.values[0], target_name="val_accuracy"),
            "param_importances.png": lambda: vis.plot_param_importances(
                study, target=lambda t: t.values[0], target_name="val_accuracy"),
        }
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for name, plot in plots.items():
                try:
                    mlflow.log_figure(plot().figure, name)
                except (ValueError, RuntimeError) as exc:  # e.g. importances need 2+ trials
                    print(f"skipped {name}: {exc}")
