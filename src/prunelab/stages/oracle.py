"""`prunelab oracle`: every criterion's scores on each seed's baseline against the true
damage of removing each unit (and a sample of single weights), with the first seed's points
for the report's figure (`prunelab.oracle.single`); and each criterion's whole set of units
against the greedy oracle's (`prunelab.oracle.unit_sets`), and on the mlp each criterion's
set of weights against the block greedy's (`prunelab.oracle.weight_sets`), in
oracle/sets.json. Seeds run in worker processes.

The ground truth (`prunelab.oracle.truth`: the damages and the greedy orders, most of the time)
is kept per seed in `<truth-dir>/<seed>-<key>.safetensors`, keyed by the baseline's bytes,
the oracle's params and the truth's code, never by the criteria: a rerun after adding or
editing a criterion scores every criterion against the kept truth.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

from prunelab import keys
from prunelab.artifacts import baseline_files
from prunelab.config import Config, load_config
from prunelab.methods import settings_of
from prunelab.models import load_model, resolve_device
from prunelab.oracle import truth
from prunelab.oracle.single import (
    SCATTER,
    criteria_against_damage,
    mean_sd_tree,
    scatter_bytes,
    set_level,
)
from prunelab.plumbing import tracking
from prunelab.plumbing.fileio import write_bytes, write_json
from prunelab.plumbing.progress import duration, progress
from prunelab.prune.masks import prunable_names
from prunelab.prune.procedure import calibration_batches
from prunelab.settings import train_val_splits
from prunelab.workers import worker_pool

TRUTH_DIR = Path("models/truth")
TRUTH_SECONDS = "truth_seconds"


def truth_key(cfg: Config, baseline: Path) -> str:
    """What a seed's truth depends on: its baseline's bytes, the params it reads (the
    held-out images, the sample, which layers are pruned, the ratios' set sizes) and the
    truth's code."""
    return keys.sha(keys.file_digest(baseline.read_bytes()), keys.params_part(
        cfg, ("device", "data", "oracle", "compute"), {"oracle": ["enabled"]}),
        repr((cfg.prune.prune_output_layer, cfg.sweep.ratios)), keys.procedure(truth.__name__)
    )[:12]


def truth_path(truth_dir: Path, cfg: Config, seed: int, baseline: Path) -> Path:
    """Where seed `seed`'s truth is kept, named by its key."""
    return truth_dir / f"{seed}-{truth_key(cfg, baseline)}.safetensors"


class _Oracle:
    def __init__(self, params: str, baselines: Path, truth_dir: Path) -> None:
        self.cfg = load_config(params)
        self.files = baseline_files(baselines, self.cfg.sweep.seeds)
        self.train, val = train_val_splits(self.cfg)
        self.held = val.take(self.cfg.oracle.examples)  # held-out: never trained on, not test
        self.truth_dir = truth_dir


class SeedTicker:
    """Where a worker's seed is, said at most every `every_s` s: a seed takes minutes, so
    the stage's count of whole seeds alone would leave minutes of silence."""

    def __init__(self, seed: int, every_s: float = 10.0) -> None:
        self.seed, self.every_s = seed, every_s
        self.start = self.last = time.monotonic()

    def __call__(self, where: str) -> None:
        now = time.monotonic()
        if now - self.last >= self.every_s:
            self.last = now
            print(f"oracle seed {self.seed}: {where}, {duration(now - self.start)} in",
                  flush=True)


def _one_seed(w: _Oracle, seed: int
              ) -> tuple[int, dict[str, Any], dict[str, Any], dict[str, Any], float | None]:
    """(seed, quality per method, the figure's points per method, the set-level oracle,
    the seconds its truth took to measure, None if it was kept from an earlier run)."""
    cfg, p = w.cfg, w.cfg.prune
    model = load_model(w.files[seed][0], resolve_device(cfg.device))
    names = prunable_names(model, p.prune_output_layer)
    path = truth_path(w.truth_dir, cfg, seed, w.files[seed][0])
    kept = path.is_file()
    tick = SeedTicker(seed)
    start, measured = time.perf_counter(), None
    if kept:
        known = truth.load(path)
    else:
        known = truth.measure(model, w.held, names, cfg.oracle.weights_per_layer, seed,
                              cfg.sweep.ratios, tick)
        measured = time.perf_counter() - start
        write_bytes(path, truth.to_bytes(known))
    calib = calibration_batches(w.train, p.calibration_batches, p.calibration_batch_size, seed)
    criteria = {m: (settings_of(cfg, m), seed) for m in p.methods}
    quality, scatter, scores = criteria_against_damage(model, w.held, calib, criteria, names,
                                                       known, tick)
    sets = set_level(model, w.held, scores, cfg.sweep.ratios, known)
    print(f"oracle seed {seed} ({'kept' if kept else 'measured'} truth): " + ", ".join(
        f"{m} ρ={q['neuron']['layer0']['spearman']:.2f}" for m, q in quality.items()
        if "neuron" in q),
        flush=True)
    return seed, quality, scatter, sets, measured


def run(cfg: Config, params: Path, baselines: Path, out_dir: Path, workers: int,
        truth_dir: Path = TRUTH_DIR) -> None:
    files = baseline_files(baselines, cfg.sweep.seeds)  # before any work
    if not cfg.oracle.enabled:
        switched_off(out_dir, truth_dir)
        return
    seeds = cfg.sweep.seeds
    keep = {truth_path(truth_dir, cfg, s, files[s][0]).name for s in seeds}
    todo = sum(not (truth_dir / k).is_file() for k in keep)
    print(f"oracle: {len(seeds)} seeds' truths, {todo} to measure, {len(seeds) - todo} kept; "
          f"{len(cfg.prune.methods)} criteria scored against them", flush=True)
    with worker_pool(_Oracle, (str(params), baselines, truth_dir), min(workers, len(seeds)),
                     cfg.compute.threads) as imap:
        results = sorted(progress(imap(_one_seed, seeds), len(seeds), "oracle", "seeds"),
                         key=lambda r: seeds.index(r[0]))
    for old in truth_dir.glob("*.safetensors"):  # truths of other baselines or settings
        if old.name not in keep:
            old.unlink()
    write_json(out_dir / "oracle.json", mean_sd_tree([q for _, q, _, _, _ in results]))
    write_json(out_dir / "sets.json", mean_sd_tree([s for _, _, _, s, _ in results]))
    # The first seed's points, for the report stage's figure (drawn there, so that a
    # figure's edit reruns seconds of drawing, not minutes of scoring).
    write_bytes(out_dir / SCATTER, scatter_bytes(results[0][2]))
    took = [t for *_, t in results if t is not None]
    if took:  # a timing, so MLflow's, not the truth file's (a DVC output): `prunelab plan`
        log_truth_seconds(cfg, statistics.median(took))


def switched_off(out_dir: Path, truth_dir: Path) -> None:
    """`oracle.enabled: false`: the stage's outputs, empty (DVC wants every one), so that the
    report leaves the oracle's sections out; no truth kept from an earlier run is deleted."""
    print("oracle: off (oracle.enabled is false): nothing measured, no oracle sections in "
          "the report", flush=True)
    truth_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "oracle.json", {})
    write_json(out_dir / "sets.json", {})
    write_bytes(out_dir / SCATTER, scatter_bytes({}))


def log_truth_seconds(cfg: Config, seconds: float) -> None:
    """What measuring one seed's truth took (the median of this run's), as an MLflow run of
    the sweep's experiment tagged stage=oracle: `prunelab plan` estimates from the last."""
    tracking.configure(cfg.mlflow)
    with tracking.stage_run(f"{cfg.model}-sweep", "oracle", {"stage": "oracle"},
                            {"oracle.examples": cfg.oracle.examples,
                             "oracle.weights_per_layer": cfg.oracle.weights_per_layer}):
        import mlflow

        mlflow.log_metric(TRUTH_SECONDS, seconds)


def last_truth_seconds(cfg: Config) -> float | None:
    """The truth-measuring time the last oracle run logged, if any run did."""
    tracking.configure(cfg.mlflow)
    runs = [r for r in tracking.runs_tagged(f"{cfg.model}-sweep", "stage", "oracle")
            if TRUTH_SECONDS in r.data.metrics]
    return max(runs, key=lambda r: r.info.start_time).data.metrics[TRUTH_SECONDS] if runs else None
