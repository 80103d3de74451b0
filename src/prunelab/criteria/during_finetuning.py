"""Criteria that prune during fine-tuning instead of before it (the procedure: `gradual`):
what each ranks by at a mask update, and what it would rank by at the trained model.

- `gmp`, gradual magnitude pruning (Zhu & Gupta 2017, "To prune, or not to prune"): the
  largest |W ⊙ M| stay, so a cut weight stays cut. Gale et al. 2019 ("The State of
  Sparsity") found it hard to beat; movement pruning is judged against it.
- `movement`, hard movement pruning (Sanh, Wolf & Rush 2020, Sec. 3): the largest
  S = −Σ_t (∂L/∂W′)⁽ᵗ⁾ ⊙ W⁽ᵗ⁾ stay, W′ = W ⊙ M the weight the forward uses, accumulated
  every step straight through the mask (so a cut weight can come back). Their S is this
  times the scores' learning rate, a constant that does not change the ranking.

At neuron granularity a unit's score is the norm (`criteria.gmp.neuron_norm`) of its incoming
effective weights (gmp, as `magnitude`), or the sum of its incoming weights' S
(movement). `score`, for the oracle: |w| for gmp; for movement the S one pass over the
calibration batches at the trained weights would accumulate, −Σ_b ∂L_b/∂w · w.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Literal

from prunelab.criteria.base import Criterion
from prunelab.criteria.magnitude_activity import magnitude_scores, magnitude_unit_scores
from prunelab.criteria.registry import Registration, register
from prunelab.criteria.scoring import (
    Batches,
    Scores,
    UnitScores,
    incoming_sums,
    summed,
    weight_gradients,
)
from prunelab.models import Net


def movement_scores(model: Net, batches: Batches) -> Scores:
    """−Σ over calibration batches of ∂L_b/∂w · w (L_b the batch-mean loss)."""
    return summed({k: -g * w for k, (w, g) in batch.items()}
                  for batch in weight_gradients(model, batches))


def movement_unit_scores(model: Net, batches: Batches) -> UnitScores:
    return incoming_sums(model, movement_scores(model, batches))


@dataclass(frozen=True)
class GmpSettings:
    neuron_norm: Literal["l1", "l2"] = "l1"  # of a unit's incoming effective weights


# While fine-tuning, a gated weight reads as W ⊙ M, so gmp's live score is magnitude's.
register(Registration(
    "gmp", "weights", "during fine-tuning",
    lambda _c, _seed: Criterion(magnitude_scores, scope="layer",
                                live=lambda model, _movement: magnitude_scores(model)),
    lambda c, _seed: Criterion(
        partial(magnitude_unit_scores, norm=c.neuron_norm), scope="layer",
        live=lambda model, _movement: magnitude_unit_scores(model, norm=c.neuron_norm)),
    GmpSettings, cite="largest |W ⊙ M| on a cubic schedule (Zhu & Gupta 2017, Eq. 1)"))
register(Registration(
    "movement", "loss gradient", "during fine-tuning",
    lambda _c, _seed: Criterion(movement_scores, scope="layer",
                                live=lambda _model, movement: dict(movement)),
    lambda _c, _seed: Criterion(movement_unit_scores, scope="layer", live=incoming_sums),
    cite="S = −Σ_t ∂L/∂W′ ⊙ W (Sanh et al. 2020, Sec. 3, hard movement pruning)"))
