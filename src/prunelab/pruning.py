"""Prune a trained model with one criterion, one-shot or in rounds, and fine-tune it.

Weight granularity: scores -> keep-masks -> held on the model by torch.nn.utils.prune.
Neuron granularity: unit scores -> keep-vectors -> a smaller dense model (`surgery`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

from prunelab.criteria import Batches, compute_scores
from prunelab.data import Split, batches
from prunelab.masks import (
    Masks,
    apply_masks,
    current_masks,
    normalized,
    prunable_names,
    select,
    unit_keep,
)
from prunelab.models import Net, baked
from prunelab.surgery import remove_units
from prunelab.training import EpochResult, FitSettings, fit


@dataclass(frozen=True)
class PruneSettings:
    method: str
    granularity: str  # "weight" | "neuron"
    sparsity: float | None = None  # fraction of prunable weights / hidden units to cut
    threshold: float | None = None  # or an absolute score threshold (exactly one of the two)
    scope: str = "global"
    normalize: bool = True
    include_output: bool = False
    seed: int = 0
    neuron_norm: str = "l1"
    round_to: int = 1  # neuron granularity: kept units per layer rounded to a multiple
    activation_stat: str = "mean"


@dataclass
class Pruned:
    """A pruned model and what was cut: weight masks, or per-layer unit keep-vectors."""

    model: Net
    masks: Masks = field(default_factory=dict)
    unit_keep: list[Tensor] = field(default_factory=list)

    def mask_tensors(self) -> dict[str, Tensor]:
        """Everything that says what was cut, as tensors for a safetensors file."""
        if self.masks:
            return {k: v.to(torch.uint8).cpu() for k, v in self.masks.items()}
        return {f"units.{i}": k.to(torch.uint8).cpu() for i, k in enumerate(self.unit_keep)}


def calibration_batches(train: Split, n_batches: int, batch_size: int, seed: int) -> Batches:
    """`n_batches` shuffled batches from the training split (never val or test)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for b in batches(train, batch_size, g):
        out.append(b)
        if len(out) == n_batches:
            break
    return out


def prune_once(model: Net, calib: Batches, s: PruneSettings) -> Pruned:
    """One-shot pruning of a copy of `model` (the original is left untouched)."""
    held = current_masks(model)  # weights cut in an earlier round stay cut
    model = baked(model)
    scores = compute_scores(s.method, s.granularity, model, calib, seed=s.seed,
                            norm=s.neuron_norm, stat=s.activation_stat)
    how = {"sparsity": s.sparsity, "threshold": s.threshold, "scope": s.scope,
           "normalize": s.normalize}
    if s.granularity == "weight":
        names = prunable_names(model, s.include_output)
        ranked = {k: scores[k] for k in names}  # type: ignore[call-overload]
        if s.normalize:
            ranked = normalized(ranked)
        # Weights cut in an earlier round rank below everything, so they stay cut.
        ranked = {k: torch.where(held[k], v, -1.0) if k in held else v for k, v in ranked.items()}
        masks = select(ranked, sparsity=s.sparsity, threshold=s.threshold, scope=s.scope,
                       normalize=False)
        return Pruned(apply_masks(model, masks), masks=masks)
    keep = unit_keep(scores, s.round_to, **how)  # type: ignore[arg-type]
    return Pruned(remove_units(model, keep), unit_keep=keep)


def prune_iteratively(
    model: Net, train: Split, s: PruneSettings, rounds: int, calib_batches: int,
    calib_batch_size: int, finetune_round: Callable[[Net, int], None],
) -> Pruned:
    """Reach `s.sparsity` in `rounds` prune/fine-tune rounds (Han et al. 2015).

    Round r cuts down to 1 − (1 − s)^(r/rounds): an equal fraction of what remains each
    round (20% a round gives the lottery-ticket schedule). Scores are recomputed on the
    fine-tuned model each round; `finetune_round(model, r)` fine-tunes in place and is not
    called after the last round (the caller's fine-tuning stage does that).
    """
    if s.sparsity is None:
        raise ValueError("iterative pruning needs a target sparsity, not a threshold")
    total_units = sum(model.spec.widths)
    pruned = Pruned(model)
    kept_units: list[Tensor] = []
    for r in range(1, rounds + 1):
        target = 1 - (1 - s.sparsity) ** (r / rounds)
        calib = calibration_batches(train, calib_batches, calib_batch_size, s.seed + r)
        if s.granularity == "weight":
            pruned = prune_once(pruned.model, calib, replace(s, sparsity=target))
        else:
            # Express the round's target over the original units as a fraction of what is left.
            current = sum(pruned.model.spec.widths)
            n_cut = round(target * total_units) - (total_units - current)
            step = prune_once(pruned.model, calib, replace(s, sparsity=n_cut / current))
            kept_units = _compose(kept_units, step.unit_keep)
            pruned = Pruned(step.model, unit_keep=kept_units)
        if r < rounds:
            finetune_round(pruned.model, r)
    return pruned


def _compose(before: list[Tensor], now: list[Tensor]) -> list[Tensor]:
    """Keep-vectors over the original units, from earlier ones and one over the survivors."""
    if not before:
        return now
    out = []
    for b, n in zip(before, now, strict=True):
        k = b.clone()
        k[b.nonzero().flatten()] = n.to(b.device)
        out.append(k)
    return out


def prune_model(
    base: Net, train: Split, val: Split, s: PruneSettings, rounds: int, calib_batches: int,
    calib_batch_size: int, ft: FitSettings, ft_seed: int,
) -> Pruned:
    """One-shot (`rounds` = 1) or iterative pruning of `base`, as every stage does it:
    calibration batches from the training split drawn with `s.seed`, and between rounds
    the fine-tuning loop `ft` seeded with `ft_seed + round`. The final fine-tuning is the
    caller's."""
    if rounds == 1:
        calib = calibration_batches(train, calib_batches, calib_batch_size, s.seed)
        return prune_once(base, calib, s)

    def between_rounds(model: Net, r: int) -> None:
        finetune(model, train, val, ft, seed=ft_seed + r)

    return prune_iteratively(base, train, s, rounds, calib_batches, calib_batch_size,
                             between_rounds)


def finetune(
    model: Net, train: Split, val: Split, s: FitSettings, seed: int,
    on_epoch: Callable[[EpochResult], None] | None = None,
) -> list[EpochResult]:
    """The baseline's training loop on the pruned model. Masks held by torch.nn.utils.prune
    keep cut weights at exactly zero; a smaller neuron-pruned model needs no mask."""
    return fit(model, train, val, s, seed, on_epoch=on_epoch, desc="finetune")
