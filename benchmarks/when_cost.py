"""Seconds per point of `prunelab when` (pruning at initialisation: the cut at θ₀, then
training for when.epochs; `prunelab.when.init_point`) beside a sweep point of the same
seed and ratio (magnitude at weight granularity: cut, fine-tune, measure), on the mlp at
params.yaml's settings: what the stage's ~455 points cost against the sweep's.

Run from the project root after `dvc repro train` (it needs data/ and models/seeds/):

    .venv/bin/python benchmarks/when_cost.py [--repeats 1] [--seed 0]

One thread, as the stages' workers run. In each round every kind of point runs once in
turn (interleaved: this machine's speed drifts); the figure is the median over rounds.
"""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable

from _seed_bench import seed_setup

from prunelab.models import load_model
from prunelab.plumbing.fileio import read_json
from prunelab.prune.settings import sweep_prune_settings
from prunelab.settings import finetune_settings, test_split, train_settings
from prunelab.study import when
from prunelab.study.sweep import sweep_point
from prunelab.when.init_point import init_point

RATIO = 16.0


def main() -> None:
    args, cfg, train, val = seed_setup(__doc__, repeats=1)
    splits = {"train": train, "val": val, "test": test_split(cfg)}
    base = load_model(f"models/seeds/{args.seed}.safetensors")
    base_acc = read_json(f"models/seeds/{args.seed}.json")["test_accuracy"]
    training, cut = when.settings(cfg, train_settings(cfg))
    kinds: dict[str, Callable[[], object]] = {
        f"sweep point (magnitude, {cfg.finetune.epochs} fine-tuning epochs)": lambda: sweep_point(
            base, base_acc, splits, sweep_prune_settings(cfg, "magnitude", "weight"),
            finetune_settings(cfg), RATIO, args.seed, False),
        **{f"at init: {m} ({training.epochs} epochs)": (
            lambda m=m: init_point(cfg.model, splits, m, "mask", RATIO, args.seed, training,
                                   cut, base_acc))
           for m in ("snip", "grasp", "synflow", "magnitude")}}
    times: dict[str, list[float]] = {}
    for _ in range(args.repeats):
        for name, compute in kinds.items():
            start = time.perf_counter()
            compute()
            times.setdefault(name, []).append(time.perf_counter() - start)
    unit = statistics.median(next(iter(times.values())))
    print(f"{platform.processor() or platform.machine()}, 1 thread, {cfg.model}, ratio "
          f"{RATIO:g}, seed {args.seed}, {args.repeats} round(s)")
    print("| point | s | × sweep point |\n|---|---|---|")
    for name, ts in times.items():
        print(f"| {name} | {statistics.median(ts):.1f} | {statistics.median(ts) / unit:.1f} |")


if __name__ == "__main__":
    main()
