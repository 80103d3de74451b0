"""Weight or neuron granularity: the one seam where the two ways of pruning differ.

Each granularity (OpenLTH's `Strategy`) knows its criteria, how scores become a cut, how
a further round cuts more, the random control with its allocation, whether a criterion
can allocate at all, and how a saved cut is held on a model again. Callers look one up by
its params name (`GRANULARITIES[s.granularity]`) and never test the name.

Weights: scores per weight -> bool masks held by torch.nn.utils.prune on the same model.
Neurons: scores per hidden unit -> keep-vectors -> a smaller dense model (`surgery`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Generic, TypeVar

import torch
from torch import Tensor

from prunelab.criteria.base import Criterion
from prunelab.criteria.registry import lookup
from prunelab.criteria.scoring import Batches, Scores, UnitScores
from prunelab.models import Net, baked, unit_groups
from prunelab.prune.masks import (
    apply_masks,
    cut_lowest,
    layer_scales,
    matched_random_masks,
    normalized,
    prunable_names,
    select,
    select_units,
    unit_layer_names,
    unit_masks,
)
from prunelab.prune.spec import PruneSettings
from prunelab.prune.surgery import remove_units

S = TypeVar("S", Scores, UnitScores)


@dataclass
class Pruned:
    """A pruned model and what was cut: `kept` maps a weight's name to its bool mask, or
    "units.<i>" to hidden layer i's keep-vector over the baseline's units."""

    model: Net
    kept: dict[str, Tensor]
    # The per-layer normalisers the ranking used; later rounds rank with the same ones.
    scales: dict[str, float]

    def mask_tensors(self) -> dict[str, Tensor]:
        """What was cut, as tensors for a safetensors file."""
        return {k: v.to(torch.uint8).cpu() for k, v in self.kept.items()}


class Granularity(ABC, Generic[S]):
    name: ClassVar[str]

    def criterion(self, method: str, settings: Any, seed: int) -> Criterion[S]:
        """The registered criterion `method` at this granularity, its settings (its own
        dataclass, `criteria.<name>` in params.yaml) and seed bound (Torch-Pruning's
        importance objects)."""
        criterion: Criterion[S] = lookup(method).build(self.name, settings, seed)
        return criterion

    def criterion_for(self, s: PruneSettings) -> Criterion[S]:
        """The criterion `s` names, with `s`'s settings."""
        return self.criterion(s.method, s.criterion, s.seed)

    def settled(self, s: PruneSettings) -> PruneSettings:
        """`s` as its method runs it: the scope its paper fixes (OBS, gmp, movement: the
        same fraction of every layer), no schedule where it does not prune during
        fine-tuning. What is logged is then what ran."""
        c = self.criterion_for(s)
        if c.scope is not None:
            s = replace(s, scope=c.scope)
        return s if c.live is not None else replace(s, gradual_interval=None,
                                                    gradual_end=None)

    def scorer(self, method: str, settings: Any, seed: int) -> Callable[[Net, Batches], S]:
        """The criterion's scoring: call it with (model, calibration batches)."""
        return self.criterion(method, settings, seed).score

    def prune(self, model: Net, calib: Batches, s: PruneSettings,
              before: Pruned | None = None) -> Pruned:
        """One cut of a copy of `model` (the original is left untouched) as `s` says;
        `before`: an earlier round's cut on this model, whose cuts and scales carry on.
        A surgeon's criterion (OBS) then updates what is left, from `model`'s inputs."""
        work = baked(model)
        s = self.settled(s)
        c = self.criterion_for(s)
        pruned = self.cut(work, c.score(work, calib), s, before)
        if c.refit is not None:
            c.refit(model, pruned.model, pruned.kept, calib)
        return pruned

    @abstractmethod
    def cut(self, model: Net, scores: S, s: PruneSettings, before: Pruned | None) -> Pruned:
        """`model` (already a copy) cut by `scores` as `s` says."""

    @abstractmethod
    def next_round(self, pruned: Pruned, calib: Batches, s: PruneSettings,
                   target: float, baseline_units: int) -> Pruned:
        """`pruned` cut further, to `target` of the baseline's weights or units."""

    @abstractmethod
    def matched_random(self, base: Net, pruned: Pruned, seed: int) -> Net:
        """`base` cut at random with exactly `pruned`'s allocation over layers."""

    @abstractmethod
    def allocates(self, model: Net, s: PruneSettings) -> bool:
        """Whether a criterion chooses how much each layer loses. Where it cannot (one
        pruned layer, or the same fraction of units cut in every layer), random pruning
        with its allocation is plain random pruning: the same seeded scores, the same cut."""

    @abstractmethod
    def hold(self, model: Net, kept: dict[str, Tensor]) -> Net:
        """A saved pruned model with its cut held again, for fine-tuning."""

    # Pruning during fine-tuning (`gradual`): which weights carry a gate, the cut at one
    # mask update (each layer to the same fraction), and the pruned model at the end.
    @abstractmethod
    def gated(self, model: Net, s: PruneSettings) -> list[str]:
        """The weights a cut can touch."""

    @abstractmethod
    def live_cut(self, model: Net, scores: S, sparsity: float,
                 s: PruneSettings) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """(what is kept, as `Pruned.kept`; a mask for every gated weight)."""

    @abstractmethod
    def finish(self, model: Net, kept: dict[str, Tensor]) -> Pruned:
        """`model` (plain weights again, cut ones at 0) as a `Pruned` holding `kept`."""


class Weights(Granularity[Scores]):
    name = "weight"

    def cut(self, model: Net, scores: Scores, s: PruneSettings,
            before: Pruned | None) -> Pruned:
        held = before.kept if before else {}
        ranked = {k: scores[k] for k in prunable_names(model, s.prune_output_layer)}
        # Over the survivors only: the cut weights' scores (0 for |w|) must not set the scale.
        scales = (before.scales if before else {}) or layer_scales(
            {k: v[held[k]] if k in held else v for k, v in ranked.items()})
        if s.normalize:
            ranked = normalized(ranked, scales)
        # Weights cut in an earlier round rank below everything, so they stay cut.
        ranked = {k: torch.where(held[k], v, -1.0) if k in held else v
                  for k, v in ranked.items()}
        masks = select(ranked, sparsity=s.sparsity, threshold=s.threshold, scope=s.scope,
                       normalize=False)
        return Pruned(apply_masks(model, masks), masks, scales)

    def next_round(self, pruned: Pruned, calib: Batches, s: PruneSettings,
                   target: float, baseline_units: int) -> Pruned:
        before = pruned if pruned.kept else None
        return self.prune(pruned.model, calib, replace(s, sparsity=target), before)

    def matched_random(self, base: Net, pruned: Pruned, seed: int) -> Net:
        return apply_masks(baked(base), matched_random_masks(pruned.kept, seed))

    def allocates(self, model: Net, s: PruneSettings) -> bool:
        return len(prunable_names(model, s.prune_output_layer)) > 1

    def hold(self, model: Net, kept: dict[str, Tensor]) -> Net:
        return apply_masks(model, {k: v.bool() for k, v in kept.items()})

    def gated(self, model: Net, s: PruneSettings) -> list[str]:
        return prunable_names(model, s.prune_output_layer)

    def live_cut(self, model: Net, scores: Scores, sparsity: float,
                 s: PruneSettings) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        gated = {k: scores[k] for k in self.gated(model, s)}  # scores may cover every layer
        masks = select(gated, sparsity=sparsity, scope="layer", normalize=False)
        return masks, masks

    def finish(self, model: Net, kept: dict[str, Tensor]) -> Pruned:
        return Pruned(apply_masks(model, kept), kept, {})


class Neurons(Granularity[UnitScores]):
    name = "neuron"

    def cut(self, model: Net, scores: UnitScores, s: PruneSettings,
            before: Pruned | None) -> Pruned:
        scales = (before.scales if before else {}) or layer_scales(
            dict(zip(unit_layer_names(scores), scores, strict=True)))
        keep = select_units(scores, s.round_to, sparsity=s.sparsity, threshold=s.threshold,
                            scope=s.scope, normalize=s.normalize, scales=scales)
        return Pruned(remove_units(model, keep), _keyed(keep), scales)

    def next_round(self, pruned: Pruned, calib: Batches, s: PruneSettings,
                   target: float, baseline_units: int) -> Pruned:
        # The round's target over the baseline's units, as a fraction of what is left.
        current = sum(pruned.model.spec.widths)
        n_cut = round(target * baseline_units) - (baseline_units - current)
        before = Pruned(pruned.model, {}, pruned.scales)
        step = self.prune(pruned.model, calib, replace(s, sparsity=n_cut / current), before)
        kept = list(step.kept.values())
        if pruned.kept:  # over the baseline's units, from the earlier cut and this one
            kept = [_within(b, n) for b, n in zip(pruned.kept.values(), kept, strict=True)]
        return Pruned(step.model, _keyed(kept), step.scales)

    def matched_random(self, base: Net, pruned: Pruned, seed: int) -> Net:
        g = torch.Generator().manual_seed(seed)
        keep = [cut_lowest(torch.rand(k.numel(), generator=g), int((~k).sum()))
                for k in pruned.kept.values()]
        return remove_units(base, keep)

    def allocates(self, model: Net, s: PruneSettings) -> bool:
        return s.scope == "global" and len(unit_groups(model)) > 1

    def hold(self, model: Net, kept: dict[str, Tensor]) -> Net:
        return model  # the smaller dense model holds its cut by its shape

    def gated(self, model: Net, s: PruneSettings) -> list[str]:
        names = [f"{n}.weight" for g in unit_groups(model) for n in (g.producer, g.consumer)]
        return list(dict.fromkeys(names))

    def live_cut(self, model: Net, scores: UnitScores, sparsity: float,
                 s: PruneSettings) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        keep = select_units(scores, s.round_to, sparsity=sparsity, scope="layer",
                            normalize=False)
        return _keyed(keep), unit_masks(model, keep)

    def finish(self, model: Net, kept: dict[str, Tensor]) -> Pruned:
        return Pruned(remove_units(model, list(kept.values())), kept, {})


def _keyed(keep: list[Tensor]) -> dict[str, Tensor]:
    return {f"units.{i}": k for i, k in enumerate(keep)}


def _within(before: Tensor, now: Tensor) -> Tensor:
    """A keep-vector over the baseline's units, from one over them and one over the
    survivors of `before`."""
    k = before.clone()
    k[before.nonzero().flatten()] = now.to(before.device)
    return k


GRANULARITIES: dict[str, Granularity[Any]] = {"weight": Weights(), "neuron": Neurons()}
