"""Every method at one fixed sparsity, over several seeds: mean and spread of the test drop.

    .venv/bin/python scripts/compare_at_sparsity.py --weight 0.9 --neuron 0.5 --seeds 0 1 2

For each seed: train a baseline (params.yaml's train section, that seed), prune it with
each method at the given sparsity, fine-tune (params.yaml's finetune section), evaluate on
the test split. Prints a Markdown table of test accuracy before and after fine-tuning and
the drop from that seed's baseline, as mean ± sample standard deviation over the seeds.
A check of the study's claims at fixed operating points; the sweep over a ladder of
ratios is the comparison stage's job.
"""

from __future__ import annotations

import argparse
import statistics
import warnings
from dataclasses import replace

from prunelab.config import load_config
from prunelab.cpu import pin_cpu_capability
from prunelab.models import build_model
from prunelab.prune.procedure import Pruned, prune_and_finetune
from prunelab.prune.settings import prune_settings
from prunelab.settings import finetune_settings, test_split, train_settings, train_val_splits
from prunelab.training import evaluate, fit, seed_everything


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--weight", type=float, default=0.9, help="weight sparsity")
    ap.add_argument("--neuron", type=float, default=0.5, help="neuron sparsity")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = ap.parse_args()
    cfg = load_config(args.params)
    pin_cpu_capability(cfg.compute.cpu_capability)  # as `prunelab` does
    train, val = train_val_splits(cfg)
    test = test_split(cfg)
    rows: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    base_accs = []
    for seed in args.seeds:
        seed_everything(seed)
        base = build_model(cfg.model).to(train.x.device)
        fit(base, train, val, train_settings(cfg), seed)
        base_acc = evaluate(base, test).accuracy
        base_accs.append(base_acc)
        for method in cfg.prune.methods:
            for granularity in cfg.prune.granularities:
                target = args.weight if granularity == "weight" else args.neuron
                # As a sweep point is cut (`sweep.point_settings`): this sparsity, this seed.
                s = replace(prune_settings(cfg, method, granularity), sparsity=target,
                            threshold=None, seed=seed)
                before_ft: list[float] = []

                def measure(pruned: Pruned) -> None:
                    before_ft.append(evaluate(pruned.model, test).accuracy)  # noqa: B023

                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    pruned = prune_and_finetune(base, train, val, s, finetune_settings(cfg),
                                                seed, on_pruned=measure)
                before, after = before_ft[0], evaluate(pruned.model, test).accuracy
                rows.setdefault((method, granularity), []).append((before, after, base_acc - after))
                print(f"seed {seed} {method}-{granularity}: {before:.4f} -> {after:.4f}",
                      flush=True)

    def ms(values: list[float], scale: float = 100) -> str:
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{scale * statistics.mean(values):.2f} ± {scale * sd:.2f}"

    print(f"\nbaseline test accuracy (%): {ms(base_accs)} over seeds {args.seeds}\n")
    print("| method | granularity | sparsity | test acc before FT (%) | test acc after FT (%) "
          "| drop from baseline (pp) |")
    print("|---|---|---|---|---|---|")
    for (method, granularity), vals in rows.items():
        target = args.weight if granularity == "weight" else args.neuron
        print(f"| {method} | {granularity} | {target} | {ms([v[0] for v in vals])} | "
              f"{ms([v[1] for v in vals])} | {ms([v[2] for v in vals])} |")


if __name__ == "__main__":
    main()
