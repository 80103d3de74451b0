"""Choose woodfisher's damping λ on the validation split (never test): the searched
baseline (params' `seed`) pruned by woodfisher at each λ and each ratio of `--ratios`,
fine-tuned as the study does (`finetune`), and scored by validation accuracy; the λ with
the best mean over the ratios is the one to put in params.yaml (`criteria.woodfisher`).

Run from the project root after `dvc repro train` (it needs data/ and models/seeds/):

    .venv/bin/python scripts/woodfisher_damping.py [--granularity weight] \
        [--dampings 1e-4 1e-3 1e-2 1e-1 1] [--ratios 8 16 32]

Prints a Markdown table (BENCHMARKS.md keeps the run that chose the default).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import replace

import torch

from prunelab.config import load_config
from prunelab.models import load_model
from prunelab.prune.procedure import prune_and_finetune
from prunelab.prune.settings import sweep_prune_settings
from prunelab.prune.spec import PruneSettings
from prunelab.ratios import ratio_sparsity
from prunelab.settings import finetune_settings, train_val_splits
from prunelab.training import evaluate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--granularity", choices=["weight", "neuron"], default="weight")
    ap.add_argument("--dampings", type=float, nargs="+", default=[1e-4, 1e-3, 1e-2, 1e-1, 1.0])
    ap.add_argument("--ratios", type=float, nargs="+", default=[8, 16, 32])
    ap.add_argument("--examples", type=int, default=None,
                    help="per-example gradients of the Fisher (default: params.yaml's)")
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = load_config(args.params)
    train, val = train_val_splits(cfg)
    base = load_model(f"models/seeds/{cfg.seed}.safetensors")
    ft = finetune_settings(cfg)
    plain = sweep_prune_settings(cfg, "woodfisher", args.granularity)
    print(f"woodfisher, {args.granularity}s, baseline seed {cfg.seed}, "
          f"{args.examples or plain.criterion.examples} examples: validation accuracy (%) "
          f"after {ft.epochs} fine-tuning epochs\n")
    print("| λ | " + " | ".join(f"{r:g}×" for r in args.ratios) + " | mean |")
    print("|---|" + "---|" * (len(args.ratios) + 1))

    def row(label: str, settings_at: Callable[[float], PruneSettings]) -> float:
        """Prune and fine-tune at every ratio, print the validation accuracies as a row."""
        accs = [100 * evaluate(prune_and_finetune(base, train, val, settings_at(r), ft,
                                                  seed=cfg.seed).model, val).accuracy
                for r in args.ratios]
        mean = sum(accs) / len(accs)
        print(f"| {label} | " + " | ".join(f"{a:.2f}" for a in accs) + f" | {mean:.2f} |",
              flush=True)
        return mean

    def woodfisher_at(damping: float) -> Callable[[float], PruneSettings]:
        c = replace(plain.criterion, damping=damping,
                    examples=args.examples or plain.criterion.examples)
        return lambda r: replace(plain, sparsity=ratio_sparsity(r), criterion=c)

    means = {d: row(f"{d:g}", woodfisher_at(d)) for d in args.dampings}
    # λ → ∞ makes F⁻¹ ∝ I: ρ ∝ w² and no update, i.e. magnitude within each layer.
    magnitude = sweep_prune_settings(cfg, "magnitude", args.granularity)
    row("magnitude, per layer (λ → ∞)",
        lambda r: replace(magnitude, sparsity=ratio_sparsity(r), scope="layer"))
    best = max(means, key=lambda d: means[d])
    print(f"\nbest on validation: λ = {best:g} ({means[best]:.2f} % mean)")


if __name__ == "__main__":
    main()
