"""Seconds to score and cut one model, for every method at both granularities, side by
side, with each method's time as a multiple of magnitude's (the floor: no data at all)
and of one fine-tuning epoch measured in the same run. A method that prunes during
fine-tuning (gmp, movement) is timed as it runs: one fine-tuning epoch with its gates and
mask updates, whose extra over a plain epoch is its cost.

Run from the project root after `dvc repro train` (it needs data/ and models/seeds/):

    .venv/bin/python benchmarks/criteria_cost.py [--repeats 3] [--seed 0]

Each figure is the median over `--repeats` rounds; in a round every method prunes once in
turn (interleaved, so that this machine's drifting speed hits them alike), on the seed's
baseline at 8× (cut 87.5 %), with params.yaml's calibration batches. OBS's greedy trace
is cached by content (`criteria.second_order`), as are woodfisher's Fisher and trace, so
the caches are cleared before each call: the figure is a cold prune, as the first sweep
point of a seed pays it.
"""

from __future__ import annotations

import platform
import statistics
import time
from dataclasses import replace

import torch
from _seed_bench import seed_setup

from prunelab.criteria import second_order, woodfisher
from prunelab.models import load_model
from prunelab.prune.granularity import GRANULARITIES
from prunelab.prune.procedure import (
    calibration_batches,
    prune_and_finetune,
    prunes_during_finetuning,
)
from prunelab.prune.settings import sweep_prune_settings
from prunelab.settings import finetune_settings
from prunelab.training import make_optimizer, train_epoch


def main() -> None:
    args, cfg, train, val = seed_setup(__doc__, repeats=3)
    base = load_model(f"models/seeds/{args.seed}.safetensors")
    ft = finetune_settings(cfg)
    runs = {(m, g): replace(sweep_prune_settings(cfg, m, g), sparsity=0.875, seed=args.seed)
            for g in cfg.prune.granularities for m in cfg.prune.methods}
    calib = calibration_batches(train, cfg.prune.calibration_batches,
                                cfg.prune.calibration_batch_size, args.seed)
    one_epoch = replace(ft, epochs=1)
    times: dict[object, list[float]] = {k: [] for k in [*runs, "finetune epoch"]}
    for _ in range(args.repeats):
        for (m, g), s in runs.items():
            second_order._TRACES.clear()
            woodfisher.clear_caches()
            start = time.perf_counter()
            if prunes_during_finetuning(s):  # the cut is made inside the epoch
                prune_and_finetune(base, train, val, s, one_epoch, seed=0)
            else:
                GRANULARITIES[g].prune(base, calib, s)
            times[(m, g)].append(time.perf_counter() - start)
        model = load_model(f"models/seeds/{args.seed}.safetensors")
        opt = make_optimizer(model, ft)
        start = time.perf_counter()
        train_epoch(model, train, opt, ft, torch.Generator().manual_seed(0))
        times["finetune epoch"].append(time.perf_counter() - start)
    med = {k: statistics.median(v) for k, v in times.items()}
    epoch = med["finetune epoch"]
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"1 thread, {cfg.model}, seed {args.seed}'s baseline, 8x, median of {args.repeats}; "
          f"one fine-tuning epoch {epoch:.2f} s")
    print("| method | granularity | s to score and cut | × magnitude | × one fine-tuning epoch |")
    print("|---|---|---|---|---|")
    for (m, g), s in runs.items():
        floor = med[("magnitude", g)]
        t = med[(m, g)]
        if prunes_during_finetuning(s):
            print(f"| {m} | {g} | {t:.3f} for a fine-tuning epoch while cutting | — | "
                  f"{t / epoch:.2f} (its extra: {t / epoch - 1:+.2f}) |")
        else:
            print(f"| {m} | {g} | {t:.3f} | {t / floor:.1f} | {t / epoch:.2f} |")


if __name__ == "__main__":
    main()
