"""The comparison: each method over a ladder of compression ratios and several seeds, and
the statistics that say which method is best at each ratio (Blalock et al. 2020).

A ratio r means cutting 1 − 1/r of the prunable weights (weight granularity) or of the
hidden units (neuron granularity); the realised compression of all parameters, and the
FLOPs, are measured on the result, since a neuron cut also removes the next layer's
inputs and biases. Seed s selects the baseline trained with seed s, the calibration
batches, the random scores and the fine-tuning order, so the spread over seeds is the
spread of the whole procedure. The statistics over points are in `stats`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch

from prunelab.data import Split
from prunelab.masks import PruningError, apply_masks, cut_lowest, matched_random_masks
from prunelab.metrics import accuracies, point_record
from prunelab.models import Net, baked
from prunelab.pruning import Pruned, finetune, prune_and_finetune
from prunelab.settings import PruneSettings
from prunelab.stats import pack_correct
from prunelab.surgery import remove_units
from prunelab.training import EpochResult, FitSettings, correct


def ratio_sparsity(ratio: float) -> float:
    """Fraction to cut for a compression ratio: 2× → 0.5, 32× → 0.96875."""
    if ratio <= 1:
        raise ValueError(f"a compression ratio must exceed 1, got {ratio}")
    return 1.0 - 1.0 / ratio


def sweep_point(
    base: Net, base_test_accuracy: float, splits: dict[str, Split], s: PruneSettings,
    ft: FitSettings, ratio: float, seed: int, matched_random: bool,
    on_epoch: Callable[[EpochResult], None] | None = None,
) -> dict[str, Any]:
    """Prune `base` to `ratio` with seed `seed` (calibration, random scores, fine-tuning
    order), fine-tune, and measure before and after on `splits` ("train", "val", "test").

    With `matched_random`, also a random control cut to the same per-layer sparsity as this
    criterion's (fields `matched_random_*`): how much of a lead is allocation, how much is
    the choice within layers. A point that cannot be realised (a layer would be emptied)
    comes back with its reason under `infeasible`, so that the sweep goes on.
    """
    s = replace(s, sparsity=ratio_sparsity(ratio), threshold=None, seed=seed)
    measured = {k: v for k, v in splits.items() if k != "train"}
    bs = ft.eval_batch_size
    before: dict[str, float] = {}

    def measure_before(pruned: Pruned) -> None:
        before.update(accuracies(pruned.model, measured, bs, suffix="_before"))

    try:
        pruned = prune_and_finetune(base, splits["train"], splits["val"], s, ft, seed,
                                    on_pruned=measure_before, on_epoch=on_epoch)
    except PruningError as exc:
        return {"method": s.method, "granularity": s.granularity, "ratio": ratio,
                "seed": seed, "target_sparsity": s.sparsity, "infeasible": str(exc)}
    point = point_record(pruned.model, base.spec, s, {
        "ratio": ratio, "seed": seed, **before, **accuracies(pruned.model, measured, bs),
        "baseline_test_accuracy": base_test_accuracy})
    point["test_accuracy_drop"] = base_test_accuracy - point["test_accuracy"]
    # Which test images it gets right, so that the report's paired tests need no rerun.
    point["test_images"] = len(splits["test"])
    point["test_correct"] = pack_correct(correct(pruned.model, splits["test"], bs).cpu().numpy())
    if matched_random:
        control = matched_random_model(base, pruned, seed)
        point.update(accuracies(control, measured, bs, suffix="_before_matched_random"))
        finetune(control, splits["train"], splits["val"], ft, seed)
        point.update(accuracies(control, measured, bs, suffix="_matched_random"))
        point["test_correct_matched_random"] = pack_correct(
            correct(control, splits["test"], bs).cpu().numpy())
    return point


def matched_random_model(base: Net, pruned: Pruned, seed: int) -> Net:
    """`base` cut at random to exactly `pruned`'s per-layer sparsity (weights) or per-layer
    widths (units), with masks held for fine-tuning."""
    if pruned.masks:
        return apply_masks(baked(base), matched_random_masks(pruned.masks, seed))
    g = torch.Generator().manual_seed(seed)
    keep = [cut_lowest(torch.rand(k.numel(), generator=g), int((~k).sum()))
            for k in pruned.unit_keep]
    return remove_units(base, keep)
