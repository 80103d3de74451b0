"""Criteria that prune during fine-tuning instead of before it (the procedure: `gradual`):
what each ranks by at a mask update, and what it would rank by at the trained model.

- `gmp`, gradual magnitude pruning (Zhu & Gupta 2017, "To prune, or not to prune"): the
  largest |W ⊙ M| stay, so a cut weight stays cut. Gale et al. 2019 ("The State of
  Sparsity") found it hard to beat; movement pruning is judged against it.
- `movement`, hard movement pruning (Sanh, Wolf & Rush 2020, Sec. 3): the largest
  S = −Σ_t (∂L/∂W′)⁽ᵗ⁾ ⊙ W⁽ᵗ⁾ stay, W′ = W ⊙ M the weight the forward uses, accumulated
  every step straight through the mask (so a cut weight can come back). Their S is this
  times the scores' learning rate, a constant that does not change the ranking.

At neuron granularity a unit's score is the norm (`prune.neuron_norm`) of its incoming
effective weights (gmp, as `magnitude`), or the sum of its incoming weights' S
(movement). `score`, for the oracle: |w| for gmp; for movement the S one pass over the
calibration batches at the trained weights would accumulate, −Σ_b ∂L_b/∂w · w.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from prunelab.criteria.base import Criterion, CriterionSettings, Factory
from prunelab.criteria.magnitude_activity import magnitude_scores, magnitude_unit_scores
from prunelab.models import Net, unit_groups
from prunelab.scoring import (
    Batches,
    Scores,
    UnitScores,
    summed,
    weight_gradients,
    weights_of,
)


def movement_scores(model: Net, batches: Batches) -> Scores:
    """−Σ over calibration batches of ∂L_b/∂w · w (L_b the batch-mean loss)."""
    return summed({k: -g * w for k, (w, g) in batch.items()}
                  for batch in weight_gradients(model, batches))


def movement_unit_scores(model: Net, batches: Batches) -> UnitScores:
    scores = movement_scores(model, batches)
    return [scores[f"{g.producer}.weight"].flatten(1).sum(1) for g in unit_groups(model)]


def _effective(model: Net, masks: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k: w.detach() * masks[k] for k, w in weights_of(model).items() if k in masks}


def gmp_live(model: Net, masks: dict[str, Tensor], movement: dict[str, Tensor]) -> Scores:
    return {k: w.abs() for k, w in _effective(model, masks).items()}


def movement_live(model: Net, masks: dict[str, Tensor], movement: dict[str, Tensor]) -> Scores:
    return dict(movement)


def _gmp_unit_live(norm: str) -> Callable[[Net, dict[str, Tensor], dict[str, Tensor]],
                                          UnitScores]:
    p = 1 if norm == "l1" else 2

    def live(model: Net, masks: dict[str, Tensor], movement: dict[str, Tensor]) -> UnitScores:
        w = _effective(model, masks)
        return [w[f"{g.producer}.weight"].flatten(1).norm(p=p, dim=1)
                for g in unit_groups(model)]
    return live


def movement_unit_live(model: Net, masks: dict[str, Tensor],
                       movement: dict[str, Tensor]) -> UnitScores:
    return [movement[f"{g.producer}.weight"].flatten(1).sum(1) for g in unit_groups(model)]


def _gmp_units(c: CriterionSettings) -> Criterion[UnitScores]:
    def score(model: Net, batches: Batches) -> UnitScores:
        return magnitude_unit_scores(model, batches, norm=c.neuron_norm)
    return Criterion(score, scope="layer", live=_gmp_unit_live(c.neuron_norm))


WEIGHT: dict[str, Factory[Scores]] = {
    "gmp": lambda c: Criterion(magnitude_scores, scope="layer", live=gmp_live),
    "movement": lambda c: Criterion(movement_scores, scope="layer", live=movement_live),
}
UNIT: dict[str, Factory[UnitScores]] = {
    "gmp": _gmp_units,
    "movement": lambda c: Criterion(movement_unit_scores, scope="layer",
                                    live=movement_unit_live),
}
