"""Prune a trained model with one criterion, one-shot or in rounds, and fine-tune it.

Weight granularity: scores -> keep-masks -> held on the model by torch.nn.utils.prune.
Neuron granularity: unit scores -> keep-vectors -> a smaller dense model (`surgery`).

`prune_and_finetune` is the one procedure: a search trial, the sweep and the scripts call
it; the `prune` and `finetune` stages call its two halves (`prune_model`, `finetune`)
with the same settings and seed, so a stage pair repeats a search trial exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

from prunelab.criteria import Batches, CriterionSettings, build_scorer
from prunelab.data import Split, batches
from prunelab.masks import (
    Masks,
    apply_masks,
    layer_scales,
    normalized,
    prunable_names,
    select,
    select_units,
    unit_layer_names,
)
from prunelab.models import Net, baked
from prunelab.settings import PruneSettings
from prunelab.surgery import remove_units
from prunelab.training import EpochResult, FitSettings, fit


@dataclass
class Pruned:
    """A pruned model and what was cut: weight masks, or per-layer unit keep-vectors."""

    model: Net
    masks: Masks = field(default_factory=dict)
    unit_keep: list[Tensor] = field(default_factory=list)
    # The per-layer normalisers the ranking used; later rounds rank with the same ones.
    scales: dict[str, float] = field(default_factory=dict)

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


def prune_once(model: Net, calib: Batches, s: PruneSettings, held: Masks | None = None,
               scales: dict[str, float] | None = None) -> Pruned:
    """One-shot pruning of a copy of `model` (the original is left untouched). `held`: the
    weight masks of earlier rounds, whose cuts stay cut; `scales`: the per-layer
    normalisers of the first round (default: computed from these scores)."""
    held = held or {}
    model = baked(model)
    criterion = CriterionSettings(s.seed, s.neuron_norm, s.activation_stat)
    scores = build_scorer(s.method, s.granularity, criterion)(model, calib)
    how = {"sparsity": s.sparsity, "threshold": s.threshold, "scope": s.scope,
           "normalize": s.normalize}
    if s.granularity == "neuron":
        scales = scales or layer_scales(dict(zip(unit_layer_names(scores), scores,  # type: ignore[arg-type]
                                                 strict=True)))
        keep = select_units(scores, s.round_to, scales=scales, **how)  # type: ignore[arg-type]
        return Pruned(remove_units(model, keep), unit_keep=keep, scales=scales)
    ranked = {k: scores[k] for k in prunable_names(model, s.prune_output_layer)}  # type: ignore[call-overload]
    # Over the survivors only: the cut weights' scores (0 for |w|) must not set the scale.
    scales = scales or layer_scales({k: v[held[k]] if k in held else v
                                     for k, v in ranked.items()})
    if s.normalize:
        ranked = normalized(ranked, scales)
    # Weights cut in an earlier round rank below everything, so they stay cut.
    ranked = {k: torch.where(held[k], v, -1.0) if k in held else v for k, v in ranked.items()}
    masks = select(ranked, **{**how, "normalize": False})  # type: ignore[arg-type]
    return Pruned(apply_masks(model, masks), masks=masks, scales=scales)


def round_targets(sparsity: float, rounds: int) -> list[float]:
    """Cumulative target after each round: 1 − (1 − s)^(r/rounds), an equal fraction of
    what remains each round (Han et al. 2015; 20% a round is the lottery-ticket schedule)."""
    return [1 - (1 - sparsity) ** (r / rounds) for r in range(1, rounds + 1)]


def prune_iteratively(model: Net, train: Split, s: PruneSettings,
                      finetune_round: Callable[[Net, int], None]) -> Pruned:
    """Reach `s.sparsity` in `s.rounds` prune/fine-tune rounds. Scores are recomputed on the
    fine-tuned model each round (calibration seeded `s.seed + r`); `finetune_round(model, r)`
    fine-tunes in place and is not called after the last round (the caller fine-tunes)."""
    if s.sparsity is None:
        raise ValueError("iterative pruning needs a target sparsity, not a threshold")
    total_units = sum(model.spec.widths)
    pruned = Pruned(model)
    for r, target in enumerate(round_targets(s.sparsity, s.rounds), start=1):
        calib = calibration_batches(train, s.calibration_batches, s.calibration_batch_size,
                                    s.seed + r)
        if s.granularity == "weight":
            pruned = prune_once(pruned.model, calib, replace(s, sparsity=target), pruned.masks,
                                pruned.scales)
        else:
            # The round's target over the original units, as a fraction of what is left.
            current = sum(pruned.model.spec.widths)
            n_cut = round(target * total_units) - (total_units - current)
            step = prune_once(pruned.model, calib, replace(s, sparsity=n_cut / current),
                              scales=pruned.scales)
            pruned = Pruned(step.model, unit_keep=_compose(pruned.unit_keep, step.unit_keep),
                            scales=step.scales)
        if r < s.rounds:
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


def prune_model(base: Net, train: Split, val: Split, s: PruneSettings, ft: FitSettings,
                seed: int) -> Pruned:
    """The pruning half of the procedure: one-shot (calibration seeded `s.seed`) or in
    `s.rounds` rounds with the fine-tuning `ft` between them, seeded `seed + round`."""
    if s.rounds == 1:
        calib = calibration_batches(train, s.calibration_batches, s.calibration_batch_size,
                                    s.seed)
        return prune_once(base, calib, s)

    def between_rounds(model: Net, r: int) -> None:
        finetune(model, train, val, ft, seed=seed + r)

    return prune_iteratively(base, train, s, between_rounds)


def finetune(
    model: Net, train: Split, val: Split, s: FitSettings, seed: int,
    on_epoch: Callable[[EpochResult], None] | None = None,
) -> list[EpochResult]:
    """The fine-tuning half: the baseline's training loop on the pruned model. Masks held by
    torch.nn.utils.prune keep cut weights at exactly zero; a smaller neuron-pruned model
    needs no mask."""
    return fit(model, train, val, s, seed, on_epoch=on_epoch, desc="finetune")


def prune_and_finetune(
    base: Net, train: Split, val: Split, s: PruneSettings, ft: FitSettings, seed: int,
    on_pruned: Callable[[Pruned], None] | None = None,
    on_epoch: Callable[[EpochResult], None] | None = None,
) -> Pruned:
    """Prune `base` (a copy) as `s` says, then fine-tune it with `ft` seeded `seed`.
    `on_pruned` sees the model before fine-tuning (to measure it), `on_epoch` each epoch
    (to log, or to stop a hopeless search trial by raising)."""
    pruned = prune_model(base, train, val, s, ft, seed)
    if on_pruned is not None:
        on_pruned(pruned)
    finetune(pruned.model, train, val, ft, seed, on_epoch=on_epoch)
    return pruned
