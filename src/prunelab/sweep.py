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

from prunelab.data import Split
from prunelab.metrics import accuracies, point_record
from prunelab.models import Net
from prunelab.pruning import Pruned, prune_and_finetune
from prunelab.settings import PruneSettings
from prunelab.training import EpochResult, FitSettings


def ratio_sparsity(ratio: float) -> float:
    """Fraction to cut for a compression ratio: 2× → 0.5, 32× → 0.96875."""
    if ratio <= 1:
        raise ValueError(f"a compression ratio must exceed 1, got {ratio}")
    return 1.0 - 1.0 / ratio


def sweep_point(
    base: Net, base_test_accuracy: float, splits: dict[str, Split], s: PruneSettings,
    ft: FitSettings, ratio: float, seed: int,
    on_epoch: Callable[[EpochResult], None] | None = None,
) -> dict[str, Any]:
    """Prune `base` to `ratio` with seed `seed` (calibration, random scores, fine-tuning
    order), fine-tune, and measure before and after on `splits` ("train", "val", "test")."""
    s = replace(s, sparsity=ratio_sparsity(ratio), threshold=None, seed=seed)
    measured = {k: v for k, v in splits.items() if k != "train"}
    bs = ft.eval_batch_size
    before: dict[str, float] = {}

    def measure_before(pruned: Pruned) -> None:
        before.update(accuracies(pruned.model, measured, bs, suffix="_before"))

    pruned = prune_and_finetune(base, splits["train"], splits["val"], s, ft, seed,
                                on_pruned=measure_before, on_epoch=on_epoch)
    point = point_record(pruned.model, base.spec, s, {
        "ratio": ratio, "seed": seed, **before, **accuracies(pruned.model, measured, bs),
        "baseline_test_accuracy": base_test_accuracy})
    point["test_accuracy_drop"] = base_test_accuracy - point["test_accuracy"]
    return point
