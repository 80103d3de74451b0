"""First-order saliencies: criteria from the gradient of the loss at the trained weights.

Conventions, so that scores are comparable across batches and batch sizes:
- weight gradients are of the batch-mean loss, averaged over batches as |g| (gradient),
  |w·g| (taylor, SNIP's sensitivity) or (w·g)² (fisher);
- unit gradients are per example (the loss summed over the batch), so ∂L/∂a for an
  example is that example's own gradient; spatial positions of a channel are averaged,
  except by fisher, which (as Molchanov et al. 2019's gate) sums them.
Calibration batches come from the *training* split. Higher means keep.
"""

from __future__ import annotations

from torch import Tensor

from prunelab.criteria.base import plain
from prunelab.criteria.registry import Registration, register
from prunelab.criteria.scoring import (
    Batches,
    Scores,
    UnitScores,
    per_unit,
    summed,
    summed_positions,
    unit_gradients,
    weight_gradients,
    weights_of,
)
from prunelab.models import Net


def gradient_scores(model: Net, batches: Batches) -> Scores:
    """Mean over calibration batches of |∂L/∂w| (L the batch-mean cross-entropy)."""
    total = summed({k: g.abs() for k, (_, g) in batch.items()}
                   for batch in weight_gradients(model, batches))
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
    total = summed({k: (w * g).pow(2) for k, (w, g) in batch.items()}
                   for batch in weight_gradients(model, batches))
    return {k: t / len(batches) for k, t in total.items()}


def gradient_unit_scores(model: Net, batches: Batches) -> UnitScores:
    """Mean over examples (and positions) of |∂L/∂a| for each unit's activation a."""
    sums: list[Tensor] | None = None
    n = 0
    for _, grads in unit_gradients(model, batches):
        batch = [per_unit(g.abs()).sum(0) for g in grads]
        sums = batch if sums is None else [s + b for s, b in zip(sums, batch, strict=True)]
        n += len(grads[0])
    assert sums is not None, "gradient scores need at least one calibration batch"
    return [s / n for s in sums]


def taylor_unit_scores(model: Net, batches: Batches) -> UnitScores:
    """Molchanov et al. 2017 ("Pruning Convolutional Neural Networks for Resource
    Efficient Inference", Eq. 8): per example, Θ = |1/M Σ_m a_m·∂L/∂a_m| over the M
    positions of the unit's feature map (M = 1 for a neuron), then averaged over the
    examples ("computed for each example separately and averaged"). The absolute value is
    taken per example: averaged first, the signed terms of a trained network cancel."""
    sums: list[Tensor] | None = None
    n = 0
    for acts, grads in unit_gradients(model, batches):
        batch = [per_unit(a * g).abs().sum(0) for a, g in zip(acts, grads, strict=True)]
        sums = batch if sums is None else [s + b for s, b in zip(sums, batch, strict=True)]
        n += len(acts[0])
    assert sums is not None, "taylor scores need at least one calibration batch"
    return [s / n for s in sums]


def fisher_unit_scores(model: Net, batches: Batches) -> UnitScores:
    """Molchanov et al. 2019's group criterion I⁽¹⁾_S = (Σ_{s∈S} g_s·w_s)², computed (as
    their implementation does) through a gate on the unit's output. Per calibration batch
    b: G = Σ over the batch's examples and the unit's positions of a·∂L_b/∂a, L_b the
    batch-mean loss (G is the gradient of a gate multiplying a); the score is G² averaged
    over batches."""
    sums: list[Tensor] | None = None
    for acts, grads in unit_gradients(model, batches):
        # unit_gradients differentiates the summed loss; / len(a) makes it the batch mean's.
        batch = [summed_positions(a * g).sum(0).div(len(a)).pow(2)
                 for a, g in zip(acts, grads, strict=True)]
        sums = batch if sums is None else [s + b for s, b in zip(sums, batch, strict=True)]
    assert sums is not None, "fisher scores need at least one calibration batch"
    return [s / len(batches) for s in sums]


register(Registration(
    "gradient", "loss gradient", "score", plain(gradient_scores), plain(gradient_unit_scores),
    cite="mean |∂L/∂w| (weights), mean |∂L/∂a| (units): the plain gradient magnitude"))
register(Registration(
    "taylor", "loss gradient", "score", plain(taylor_scores), plain(taylor_unit_scores),
    cite="|w·∂L/∂w| (Lee et al. 2019, SNIP's sensitivity); units: Molchanov et al. 2017, Eq. 8"))
register(Registration(
    "fisher", "loss gradient", "score", plain(fisher_scores), plain(fisher_unit_scores),
    cite="(w·∂L/∂w)² (Molchanov et al. 2019, I⁽¹⁾; OBD's saliency with the empirical Fisher)"))
