"""`sqrt-taylor`: a documented toy criterion, to show how one is brought to prunelab.

Weights: s = |w| · (E_b |∂L_b/∂w|)^p, the mean over calibration batches b of the gradient's
magnitude (L_b the batch-mean cross-entropy) raised to `power` (p = ½ by default): between
magnitude (p = 0, as 0⁰ = 1) and prunelab's `taylor` (p = 1: |w|·E_b|g_b| = E_b|w·g_b|).
Neurons: a unit's score is the sum of its incoming weights' scores (as prunelab's
structured forms of weight scores, e.g. `wanda`). Higher means keep.

Registering it is the whole of the integration: a name, what it reads (its family), its
kind, a builder per granularity and its own settings dataclass, whose fields params.yaml
sets under `criteria.sqrt-taylor:` (checked: an unknown key or a wrong type is refused).
"""

from __future__ import annotations

from dataclasses import dataclass

from prunelab.criteria.base import Criterion
from prunelab.criteria.registry import Registration, register
from prunelab.criteria.scoring import (
    Batches,
    Scores,
    UnitScores,
    incoming_sums,
    summed,
    weight_gradients,
    weights_of,
)
from prunelab.models import Net


@dataclass(frozen=True)
class SqrtTaylorSettings:
    power: float = 0.5  # the gradient's exponent p


def sqrt_taylor_scores(model: Net, batches: Batches, power: float = 0.5) -> Scores:
    """|w| · (mean over batches of |∂L_b/∂w|)^power."""
    total = summed({k: g.abs() for k, (_, g) in batch.items()}
                   for batch in weight_gradients(model, batches))
    return {k: w.detach().abs() * (total[k] / len(batches)).pow(power)
            for k, w in weights_of(model).items()}


def sqrt_taylor_unit_scores(model: Net, batches: Batches, power: float = 0.5) -> UnitScores:
    """The sum of a unit's incoming weights' scores."""
    return incoming_sums(model, sqrt_taylor_scores(model, batches, power))


def _weight(settings: SqrtTaylorSettings, _seed: int) -> Criterion[Scores]:
    return Criterion(lambda model, batches: sqrt_taylor_scores(model, batches, settings.power))


def _neuron(settings: SqrtTaylorSettings, _seed: int) -> Criterion[UnitScores]:
    return Criterion(lambda model, batches: sqrt_taylor_unit_scores(model, batches,
                                                                    settings.power))


register(Registration("sqrt-taylor", "loss gradient", "score", _weight, _neuron,
                      SqrtTaylorSettings, cite="|w|·(E_b|∂L_b/∂w|)^p, a toy (this example)"))
