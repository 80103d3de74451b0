"""Prune a trained model with one criterion, one-shot or in rounds, and fine-tune it.

How a cut is made at each granularity (weights masked, or units removed to give a
smaller dense model) is `granularity`'s; the procedure around it is the same for both.

`prune_and_finetune` is the one procedure: a search trial, the sweep and the scripts call
it; the `prune` and `finetune` stages call its two halves (`prune_model`, `finetune`)
with the same settings and seed, so a stage pair repeats a search trial exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import torch

from prunelab.criteria.scoring import Batches
from prunelab.data import Split, batches
from prunelab.models import Net, baked
from prunelab.prune.gradual import prune_during_finetuning
from prunelab.prune.granularity import GRANULARITIES, Pruned
from prunelab.prune.spec import PruneSettings
from prunelab.training import EpochResult, FitSettings, fit


def calibration_batches(train: Split, n_batches: int, batch_size: int, seed: int) -> Batches:
    """`n_batches` shuffled batches from the training split (never val or test)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for b in batches(train, batch_size, g):
        out.append(b)
        if len(out) == n_batches:
            break
    return out


def prune_once(model: Net, calib: Batches, s: PruneSettings,
               before: Pruned | None = None) -> Pruned:
    """One-shot pruning of a copy of `model` (the original is left untouched); `before`:
    an earlier round's cut on this model, whose cuts stay cut and whose per-layer
    normalisers rank this round too."""
    return GRANULARITIES[s.granularity].prune(model, calib, s, before)


def round_targets(sparsity: float, rounds: int) -> list[float]:
    """Cumulative target after each round: 1 − (1 − s)^(r/rounds), an equal fraction of
    what remains each round (Han et al. 2015; 20% a round is the lottery-ticket schedule)."""
    return [1 - (1 - sparsity) ** (r / rounds) for r in range(1, rounds + 1)]


def round_budget(ft: FitSettings, rounds: int) -> FitSettings:
    """One round's fine-tuning when `rounds` rounds share `ft`: its epochs split evenly,
    so that pruning in rounds fine-tunes exactly as long as pruning once (Molchanov et
    al. 2017 fine-tune between small cuts; judged at a larger total budget, an iterative
    criterion would gain from the extra training, not from how it cuts)."""
    if ft.epochs % rounds:
        raise ValueError(f"{ft.epochs} fine-tuning epoch(s) do not split evenly over "
                         f"{rounds} rounds; make finetune.epochs a multiple of the rounds")
    return replace(ft, epochs=ft.epochs // rounds)


def prune_iteratively(model: Net, train: Split, s: PruneSettings,
                      finetune_round: Callable[[Net, int], None]) -> Pruned:
    """Reach `s.sparsity` in `s.rounds` prune/fine-tune rounds. Scores are recomputed on the
    fine-tuned model each round (calibration seeded `s.seed + r`); `finetune_round(model, r)`
    fine-tunes in place and is not called after the last round (the caller fine-tunes)."""
    if s.sparsity is None:
        raise ValueError("iterative pruning needs a target sparsity, not a threshold")
    granularity = GRANULARITIES[s.granularity]
    baseline_units = sum(model.spec.widths)
    pruned = Pruned(model, {}, {})
    for r, target in enumerate(round_targets(s.sparsity, s.rounds), start=1):
        calib = calibration_batches(train, s.calibration_batches, s.calibration_batch_size,
                                    s.seed + r)
        pruned = granularity.next_round(pruned, calib, s, target, baseline_units)
        if r < s.rounds:
            finetune_round(pruned.model, r)
    return pruned


def prunes_during_finetuning(s: PruneSettings) -> bool:
    """Whether `s`'s method cuts while fine-tuning (gmp, movement) instead of before it."""
    return GRANULARITIES[s.granularity].criterion_for(s).live is not None


def prune_model(base: Net, train: Split, val: Split, s: PruneSettings, ft: FitSettings,
                seed: int) -> Pruned:
    """The pruning half of the procedure: one-shot (calibration seeded `s.seed`) or in
    `s.rounds` rounds with a round's share of `ft` (`round_budget`) between them, seeded
    `seed + round`. A method that prunes during fine-tuning cuts nothing here: a dense
    copy, cut later."""
    if prunes_during_finetuning(s):
        return Pruned(baked(base), {}, {})
    if s.rounds == 1:
        calib = calibration_batches(train, s.calibration_batches, s.calibration_batch_size,
                                    s.seed)
        return prune_once(base, calib, s)

    def between_rounds(model: Net, r: int) -> None:
        finetune(model, train, val, round_budget(ft, s.rounds), seed=seed + r)

    return prune_iteratively(base, train, s, between_rounds)


def finetune(
    model: Net, train: Split, val: Split, s: FitSettings, seed: int,
    on_epoch: Callable[[EpochResult], None] | None = None,
) -> list[EpochResult]:
    """The baseline's training loop on a pruned model. Masks held by torch.nn.utils.prune
    keep cut weights at exactly zero; a smaller neuron-pruned model needs no mask."""
    return fit(model, train, val, s, seed, on_epoch=on_epoch, desc="finetune")


def finetune_pruned(
    pruned: Pruned, train: Split, val: Split, s: PruneSettings, ft: FitSettings, seed: int,
    on_epoch: Callable[[EpochResult], None] | None = None,
) -> Pruned:
    """The fine-tuning half: `pruned` fine-tuned with `ft` seeded `seed` (in place; after
    `s.rounds` rounds, the last round's share of it), or, for a method that prunes during
    fine-tuning, cut to `s.sparsity` while it is."""
    live = GRANULARITIES[s.granularity].criterion_for(s).live
    if live is None:
        finetune(pruned.model, train, val, round_budget(ft, s.rounds), seed, on_epoch=on_epoch)
        return pruned
    return prune_during_finetuning(pruned.model, train, val, s, ft, seed, live, on_epoch)


def prune_and_finetune(
    base: Net, train: Split, val: Split, s: PruneSettings, ft: FitSettings, seed: int,
    on_pruned: Callable[[Pruned], None] | None = None,
    on_epoch: Callable[[EpochResult], None] | None = None,
) -> Pruned:
    """Prune `base` (a copy) as `s` says, then fine-tune it with `ft` seeded `seed`.
    `on_pruned` sees the cut model before fine-tuning (to measure it; not called for a
    method that prunes during fine-tuning, which has none), `on_epoch` each epoch (to
    log, or to stop a hopeless search trial by raising)."""
    pruned = prune_model(base, train, val, s, ft, seed)
    if on_pruned is not None and not prunes_during_finetuning(s):
        on_pruned(pruned)
    return finetune_pruned(pruned, train, val, s, ft, seed, on_epoch)
