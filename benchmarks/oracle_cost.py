"""Where one seed of the oracle stage spends its time, part by part, each as seconds and
as a multiple of one 1-thread training epoch of the baseline measured in the same run
(issue 24: the oracle trains nothing, so all of it is above the study's training floor).

Run from the project root after `dvc repro train` (it needs data/ and models/seeds/):

    .venv/bin/python benchmarks/oracle_cost.py [--seed 0] [--repeats 1]

The two calls `prunelab oracle` makes for a seed, as it makes them: every method's
scores against the single-removal damage (`oracle.criteria_against_damage`: units, the
sampled weights, OBS after its update), then the whole sets (`oracle.set_level`: unit sets
against the one-at-a-time greedy, the split-half reliability and, on the mlp, weight sets
against the block greedy). The epoch is measured before and after (median), in a process
of its own as `benchmarks/floor.py` does.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _seed_bench import seed_setup
from floor import read_machine

from prunelab.methods import settings_of
from prunelab.models import load_model
from prunelab.oracle import truth
from prunelab.oracle.single import criteria_against_damage, set_level
from prunelab.prune.masks import prunable_names
from prunelab.prune.procedure import calibration_batches


def _timed(work: Callable[..., Any], *args: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    result = work(*args)
    return time.perf_counter() - start, result


def main() -> None:
    args, cfg, train, val = seed_setup(__doc__, repeats=1)
    p, seed = cfg.prune, args.seed
    held = val.take(cfg.oracle.examples)
    model = load_model(f"models/seeds/{seed}.safetensors")
    calib = calibration_batches(train, p.calibration_batches, p.calibration_batch_size, seed)
    epochs = [read_machine(Path.cwd()).epoch_s]
    rows: dict[str, list[float]] = {}
    for _ in range(args.repeats):
        names = prunable_names(model, p.prune_output_layer)
        s, known = _timed(truth.measure, model, held, names, cfg.oracle.weights_per_layer,
                          seed, cfg.sweep.ratios)
        rows.setdefault("ground truth (damages, greedy orders; kept between runs)",
                        []).append(s)
        s, (_, _, scores) = _timed(
            criteria_against_damage, model, held, calib,
            {m: (settings_of(cfg, m), seed) for m in p.methods}, names, known)
        rows.setdefault("scores against single removals", []).append(s)
        s, _ = _timed(set_level, model, held, scores, cfg.sweep.ratios, known)
        rows.setdefault("whole sets (units, weights on the mlp, reliability)", []).append(s)
    epochs.append(read_machine(Path.cwd()).epoch_s)
    epoch = statistics.median(epochs)
    print(f"model {cfg.model}, seed {seed}, {len(held)} held-out images, "
          f"1-thread epoch {epoch:.2f} s (before {epochs[0]:.2f}, after {epochs[-1]:.2f})")
    print("| part | s | epochs |\n|---|---|---|")
    total = 0.0
    for part, times in rows.items():
        s = statistics.median(times)
        total += s
        print(f"| {part} | {s:.1f} | {s / epoch:.0f} |")
    print(f"| one seed in all | {total:.1f} | {total / epoch:.0f} |")


if __name__ == "__main__":
    main()
