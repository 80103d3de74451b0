"""`prunelab oracle`: every criterion's scores on each seed's baseline against the true
damage of removing each unit (and a sample of single weights), with a figure
(`prunelab.oracle`); and each criterion's whole set of units against the greedy oracle's
(`prunelab.set_oracle`), and on the mlp each criterion's set of weights against the block
greedy's (`prunelab.weight_sets`), in oracle/sets.json. Seeds run in worker processes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prunelab import report
from prunelab.artifacts import baseline_files
from prunelab.config import Config, load_config
from prunelab.criteria import CriterionSettings
from prunelab.fileio import write_json
from prunelab.masks import prunable_names
from prunelab.models import load_model, resolve_device
from prunelab.oracle import criteria_against_damage, mean_sd_tree, set_level
from prunelab.progress import progress
from prunelab.pruning import calibration_batches
from prunelab.settings import train_val_splits
from prunelab.workers import worker_pool


class _Oracle:
    def __init__(self, params: str, baselines: Path) -> None:
        self.cfg = load_config(params)
        self.files = baseline_files(baselines, self.cfg.sweep.seeds)
        self.train, val = train_val_splits(self.cfg)
        self.held = val.take(self.cfg.oracle.examples)  # held-out: never trained on, not test


def _one_seed(w: _Oracle, seed: int
              ) -> tuple[int, dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(seed, quality per method, the figure's points per method, the set-level oracle)."""
    p = w.cfg.prune
    model = load_model(w.files[seed][0], resolve_device(w.cfg.device))
    calib = calibration_batches(w.train, p.calibration_batches, p.calibration_batch_size, seed)
    criterion = CriterionSettings(seed, p.neuron_norm, p.activation_stat)
    quality, scatter, scores = criteria_against_damage(
        model, w.held, calib, p.methods, criterion,
        prunable_names(model, p.prune_output_layer), w.cfg.oracle.weights_per_layer, seed)
    sets = set_level(model, w.held, scores, w.cfg.sweep.ratios)
    print(f"oracle seed {seed}: " + ", ".join(
        f"{m} ρ={q['neuron']['layer0']['spearman']:.2f}" for m, q in quality.items()
        if "neuron" in q),
        flush=True)
    return seed, quality, scatter, sets


def run(cfg: Config, params: Path, baselines: Path, out_dir: Path, workers: int) -> None:
    baseline_files(baselines, cfg.sweep.seeds)  # before any work
    seeds = cfg.sweep.seeds
    with worker_pool(_Oracle, (str(params), baselines), min(workers, len(seeds)),
                     cfg.compute.threads) as imap:
        results = sorted(progress(imap(_one_seed, seeds), len(seeds), "oracle", "seeds"),
                         key=lambda r: seeds.index(r[0]))
    write_json(out_dir / "oracle.json", mean_sd_tree([q for _, q, _, _ in results]))
    write_json(out_dir / "sets.json", mean_sd_tree([s for _, _, _, s in results]))
    # The first seed's points, for the figure.
    report.save_figure(report.oracle_figure(results[0][2]), out_dir / "scatter.png")
