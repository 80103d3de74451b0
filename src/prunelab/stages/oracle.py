"""`prunelab oracle`: every criterion's scores on each seed's baseline against the true
damage of removing each unit (and a sample of single weights), with a figure."""

from __future__ import annotations

from pathlib import Path

import torch

from prunelab import report
from prunelab.config import Config
from prunelab.criteria import CriterionSettings, build_scorer
from prunelab.fileio import write_json
from prunelab.masks import prunable_names
from prunelab.models import load_model, resolve_device
from prunelab.oracle import criterion_quality, unit_damage, weight_damage
from prunelab.pruning import calibration_batches
from prunelab.settings import baseline_files, train_val_splits
from prunelab.stats import mean_sd_tree

torch.set_num_threads(1)  # small per-removal passes: more threads only contend


def run(cfg: Config, baselines: Path, out_dir: Path) -> None:
    files = baseline_files(baselines, cfg.sweep.seeds)  # before any work
    train, val = train_val_splits(cfg)
    held = val.take(cfg.oracle.examples)  # held-out: never trained on, never test
    p = cfg.prune
    per_seed, scatter = [], {}
    for seed, (model_file, _) in files.items():
        model = load_model(model_file, resolve_device(cfg.device))
        names = prunable_names(model, p.prune_output_layer)
        units = unit_damage(model, held)
        weights = weight_damage(model, held, names, cfg.oracle.weights_per_layer, seed)
        calib = calibration_batches(train, p.calibration_batches, p.calibration_batch_size,
                                    seed)
        settings = CriterionSettings(seed, p.neuron_norm, p.activation_stat)
        quality = {}
        for method in p.methods:
            unit_scores = build_scorer(method, "neuron", settings)(model, calib)
            weight_scores = build_scorer(method, "weight", settings)(model, calib)
            quality[method] = criterion_quality(unit_scores, weight_scores, units, weights)
            if not scatter.get(method):  # the first seed's points, for the figure
                scatter[method] = {
                    "neuron": (torch.cat(unit_scores), torch.cat(units)),  # type: ignore[arg-type]
                    "weight": (torch.cat([weight_scores[n].flatten()[i]  # type: ignore[index]
                                          for n, (i, _) in weights.items()]),
                               torch.cat([d for _, d in weights.values()]))}
        per_seed.append(quality)
        print(f"oracle seed {seed}: " + ", ".join(
            f"{m} ρ={q['neuron']['layer0']['spearman']:.2f}" for m, q in quality.items()),
            flush=True)
    write_json(out_dir / "oracle.json", mean_sd_tree(per_seed))
    report.save_figure(report.oracle_figure(scatter), out_dir / "scatter.png")
