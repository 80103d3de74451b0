"""`PruneSettings`: how one criterion prunes, in a module of its own, so that what takes
the settings (`granularity`, `gradual`, `procedure`) imports it without an import circle,
type-only ones included."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prunelab.training import FitSettings


@dataclass(frozen=True)
class PruneSettings:
    """How one criterion prunes (OpenLTH-style: one dataclass per concern, no defaults)."""

    method: str
    granularity: str  # "weight" | "neuron"
    # The target: the fraction of prunable weights (weight granularity) or of hidden units
    # (neuron granularity) to cut, or an absolute score threshold; exactly one is set.
    sparsity: float | None
    threshold: float | None
    scope: str  # "global" | "layer"
    normalize: bool
    prune_output_layer: bool
    criterion: Any  # the method's own settings (its registration's dataclass)
    round_to: int  # neuron granularity: kept units per layer rounded to a multiple
    # 1 = one-shot; k > 1 reaches the target in k prune/fine-tune rounds, each fine-tuning
    # 1/k of the epochs (`round_budget`): iterative and one-shot get the same budget.
    rounds: int
    # Methods that prune during fine-tuning (gmp, movement; `gradual`): a mask update every
    # `gradual_interval` steps, the target reached at `gradual_end` of the steps.
    gradual_interval: int | None  # None: the method cuts before fine-tuning
    gradual_end: float | None
    calibration_batches: int
    calibration_batch_size: int
    seed: int  # calibration batches and random scores


def run_params(s: PruneSettings, ft: FitSettings, seed: int) -> dict[str, Any]:
    """The MLflow params every pruned-model run logs (prune stage, sweep points), from the
    settings and fine-tuning seed that ran, never rebuilt from params.yaml (a sweep's
    neuron points cut with `sweep.neuron_scope`; the prune stage repeats its chosen
    trial's seed). The same names everywhere, so the MLflow UI's compare view lines them
    all up."""
    # finetune.epochs is the whole budget; in rounds each fine-tunes its share of it.
    cut = ({"rounds": s.rounds, "finetune.epochs_per_round": ft.epochs // s.rounds}
           if s.gradual_interval is None else  # cut while fine-tuning
           {"gradual_interval": s.gradual_interval, "gradual_end": s.gradual_end})
    return {
        "method": s.method, "granularity": s.granularity, "scope": s.scope,
        "target_sparsity": s.sparsity, "threshold": s.threshold, "normalize": s.normalize,
        **cut, "calibration_seed": s.seed, "finetune.lr": ft.lr,
        "finetune.epochs": ft.epochs, "finetune.penalty": ft.penalty,
        "finetune.lr_schedule": ft.lr_schedule, "finetune.weight_decay": ft.weight_decay,
        "seed": seed,
    }
