"""Seconds to score and cut a freshly initialised model at initialisation (SNIP, GraSP,
SynFlow; `prunelab.when.at_init`) on each of the three models, beside taylor's |w·g| on the
same model and batches (the cheapest gradient criterion, the unit of the ratio).

Run from the project root after `dvc repro download` (it needs data/):

    .venv/bin/python benchmarks/at_init_cost.py [--repeats 3] [--seed 0]

Each figure is the median over `--repeats` rounds; in a round every method scores and cuts
once in turn (interleaved: this machine's speed drifts). Density 1/8 (8×), params.yaml's
calibration batches, every weight scored (the output layer too, as the papers do),
SynFlow with the authors' 100 rounds.
"""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable

import torch
from _seed_bench import seed_setup

from prunelab.criteria.first_order import taylor_scores
from prunelab.models import DEFAULT_WIDTHS, Net, build_model
from prunelab.prune.masks import Masks, prunable_names
from prunelab.prune.procedure import calibration_batches
from prunelab.when.at_init import global_keep, grasp_scores, snip_scores, synflow_masks

DENSITY = 1 / 8


def main() -> None:
    args, cfg, train, _ = seed_setup(__doc__, repeats=3)
    calib = calibration_batches(train, cfg.prune.calibration_batches,
                                cfg.prune.calibration_batch_size, args.seed)
    methods: dict[str, Callable[[Net, list[str]], Masks]] = {
        "taylor": lambda m, n: global_keep({k: s for k, s in taylor_scores(m, calib).items()
                                            if k in n}, DENSITY),
        "snip": lambda m, n: global_keep(snip_scores(m, calib, n), DENSITY),
        "grasp": lambda m, n: global_keep(grasp_scores(m, calib, n), DENSITY),
        "synflow": lambda m, n: synflow_masks(m, DENSITY, n, rounds=100),
    }
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.repeats):
        for name in DEFAULT_WIDTHS:
            torch.manual_seed(args.seed)
            model = build_model(name)
            names = prunable_names(model, prune_output_layer=True)
            for method, cut in methods.items():
                start = time.perf_counter()
                cut(model, names)
                times.setdefault((name, method), []).append(time.perf_counter() - start)
    print(f"{platform.processor() or platform.machine()}, 1 thread, {args.repeats} rounds, "
          f"{len(calib)} calibration batches of {cfg.prune.calibration_batch_size}")
    print("| model | method | s to score and cut | × taylor |\n|---|---|---|---|")
    for (name, method), ts in times.items():
        unit = statistics.median(times[(name, "taylor")])
        print(f"| {name} | {method} | {statistics.median(ts):.3f} | "
              f"{statistics.median(ts) / unit:.1f} |")


if __name__ == "__main__":
    main()
