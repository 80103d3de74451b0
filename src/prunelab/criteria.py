"""Pruning criteria: each maps a model (and calibration data) to importance scores.

Here the weight criteria and the registry of all criteria (the neuron ones are in
`unit_criteria`, the shared machinery in `scoring`). Higher means more important; what is
cut, and how many, is decided elsewhere (`masks`). Calibration batches come from the
*training* split.

Conventions, so that scores are comparable across batches and batch sizes:
- weight gradients are of the batch-mean loss, averaged over batches as |g| (gradient),
  |w·g| (taylor, SNIP's sensitivity) or (w·g)² (fisher);
- unit gradients are per example (the loss summed over the batch), so ∂L/∂a for an
  example is that example's own gradient; spatial positions of a channel are averaged,
  except by fisher, which (as Molchanov et al. 2019's gate) sums them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F

from prunelab.models import Net, weighted_layers
from prunelab.scoring import Batches, Scores, UnitScores, per_unit, recording, weights_of
from prunelab.unit_criteria import (
    activation_unit_scores,
    fisher_unit_scores,
    gradient_unit_scores,
    magnitude_unit_scores,
    random_unit_scores,
    taylor_unit_scores,
)


@dataclass(frozen=True)
class CriterionSettings:
    """What some criteria need beyond the model and the batches."""

    seed: int  # random: the generator's seed
    neuron_norm: str  # magnitude, neuron granularity: "l1" | "l2"
    activation_stat: str  # activation, neuron granularity: "mean" | "apoz"


def magnitude_scores(model: Net, batches: Batches = ()) -> Scores:
    """|w|."""
    return {k: w.detach().abs() for k, w in weights_of(model).items()}


def gradient_scores(model: Net, batches: Batches) -> Scores:
    """Mean over calibration batches of |∂L/∂w| (L the batch-mean cross-entropy)."""
    weights = weights_of(model)
    total = {k: torch.zeros_like(w) for k, w in weights.items()}
    model.eval()
    for x, y in batches:
        grads = torch.autograd.grad(F.cross_entropy(model(x), y), list(weights.values()))
        for k, g in zip(weights, grads, strict=True):
            total[k] += g.abs()
    return {k: t / len(batches) for k, t in total.items()}


def taylor_scores(model: Net, batches: Batches) -> Scores:
    """Mean over batches of |w·∂L/∂w|: the first-order Taylor estimate of the loss change
    when w is zeroed, SNIP's connection sensitivity |g·w| (Lee et al. 2019; there at
    initialisation, here on the trained model). Not Molchanov et al. 2019, which
    squares it (that is `fisher`)."""
    grads = gradient_scores(model, batches)
    return {k: w.detach().abs() * grads[k] for k, w in weights_of(model).items()}


def fisher_scores(model: Net, batches: Batches) -> Scores:
    """Mean over batches b of (w·∂L_b/∂w)², L_b the batch-mean loss.

    Molchanov et al. 2019 ("Importance Estimation for Neural Network Pruning"):
    I⁽¹⁾_m = (g_m·w_m)², the squared first-order Taylor change, averaged over minibatches.
    Since E_b[(w·g_b)²] = w²·E_b[g_b²], it is also Optimal Brain Damage's saliency
    s = ½·h_kk·u_k² (LeCun et al. 1990) with the Hessian diagonal estimated by the empirical
    Fisher E_b[g_b²], up to the factor ½ — a second-order criterion from gradients alone.
    """
    weights = weights_of(model)
    total = {k: torch.zeros_like(w) for k, w in weights.items()}
    model.eval()
    for x, y in batches:
        grads = torch.autograd.grad(F.cross_entropy(model(x), y), list(weights.values()))
        for (k, w), g in zip(weights.items(), grads, strict=True):
            total[k] += (w.detach() * g).pow(2)
    return {k: t / len(batches) for k, t in total.items()}


def activation_weight_scores(model: Net, batches: Batches) -> Scores:
    """|w| × mean |input activation| of the input it multiplies (ShrinkBench's "MagAct").

    For a conv filter tap, the input activation is its input channel's mean over positions.
    """
    layers = weighted_layers(model)
    sums = [torch.zeros(m.weight.shape[1], device=m.weight.device) for _, m in layers]
    n = 0
    model.eval()
    with torch.no_grad(), recording([m for _, m in layers], inputs=True) as seen:
        for x, _ in batches:
            seen.clear()
            model(x)
            for i, inp in enumerate(seen):
                sums[i] += per_unit(inp.abs()).sum(0)
            n += len(x)
    scores = {}
    for (prefix, m), s in zip(layers, sums, strict=True):
        mean_in = s / n
        shape = (1, -1) + (1,) * (m.weight.dim() - 2)
        scores[f"{prefix}.weight"] = m.weight.detach().abs() * mean_in.view(shape)
    return scores


def random_scores(model: Net, batches: Batches = (), seed: int = 0) -> Scores:
    """Seeded uniform scores: the control every comparison needs."""
    g = torch.Generator().manual_seed(seed)
    return {k: torch.rand(w.shape, generator=g).to(w.device) for k, w in weights_of(model).items()}


WeightScorer = Callable[[Net, Batches], Scores]
UnitScorer = Callable[[Net, Batches], UnitScores]

# name -> builder of a scorer with its settings bound (Torch-Pruning's importance objects),
# so that scoring is one call, `scorer(model, batches)`, whatever the criterion. Each
# granularity (`granularity.py`) looks its criteria up in its own table.
WEIGHT_CRITERIA: dict[str, Callable[[CriterionSettings], WeightScorer]] = {
    "gradient": lambda c: gradient_scores,
    "taylor": lambda c: taylor_scores,
    "fisher": lambda c: fisher_scores,
    "magnitude": lambda c: magnitude_scores,
    "activation": lambda c: activation_weight_scores,
    "random": lambda c: partial(random_scores, seed=c.seed),
}
UNIT_CRITERIA: dict[str, Callable[[CriterionSettings], UnitScorer]] = {
    "gradient": lambda c: gradient_unit_scores,
    "taylor": lambda c: taylor_unit_scores,
    "fisher": lambda c: fisher_unit_scores,
    "magnitude": lambda c: partial(magnitude_unit_scores, norm=c.neuron_norm),
    "activation": lambda c: partial(activation_unit_scores, stat=c.activation_stat),
    "random": lambda c: partial(random_unit_scores, seed=c.seed),
}
