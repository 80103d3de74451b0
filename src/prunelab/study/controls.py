"""The controls a pruned model is judged against, beside the baseline (issue 23).

- `dense+ft`: the baseline itself, not pruned, fine-tuned exactly as every pruned model is
  (the same epochs, lr and seed). Fine-tuning is extra training: at 2× the pruned models
  beat the baseline, so "pruning costs x pp" is measured against this, not the baseline.
- `scratch` (neuron granularity): a dense model with the pruned model's widths, trained
  from a fresh initialisation (seeded like its baseline) for the baseline's epochs plus
  fine-tuning's, at the baseline's lr — the same epochs the pruned model has seen. If it
  matches the pruned models, it is the architecture, not which units were kept, that
  counts (Liu et al. 2019, "Rethinking the Value of Network Pruning", §4).

Both are paired with the methods like any other point (same seeds, same test images).
"""

from __future__ import annotations

from dataclasses import replace

from prunelab.data import Split
from prunelab.models import ModelSpec, Net, baked, build_model
from prunelab.prune.procedure import finetune
from prunelab.records import CONTROLS, DENSE_FT, SCRATCH
from prunelab.training import FitSettings, fit, seed_everything

__all__ = ["CONTROLS", "DENSE_FT", "SCRATCH", "dense_finetuned", "from_scratch"]

def dense_finetuned(base: Net, train: Split, val: Split, ft: FitSettings, seed: int) -> Net:
    """A copy of `base`, fine-tuned with `ft` seeded `seed` (as `pruning.finetune` does for
    a pruned model)."""
    model = baked(base)
    finetune(model, train, val, ft, seed)
    return model


def from_scratch(spec: ModelSpec, train: Split, val: Split, training: FitSettings,
                 ft: FitSettings, seed: int) -> Net:
    """A fresh model of `spec` (the pruned model's widths), initialised with `seed` and
    trained with `training` for `training.epochs + ft.epochs` epochs."""
    seed_everything(seed)
    model = build_model(spec).to(train.x.device)
    fit(model, train, val, replace(training, epochs=training.epochs + ft.epochs), seed,
        desc="scratch")
    return model
