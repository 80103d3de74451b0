"""Neuron/channel criteria: one score per hidden unit, higher means keep.

Unit gradients are per example (the loss summed over the batch), so ∂L/∂a for an example
is that example's own gradient; a channel's positions are averaged, except by fisher,
which (as Molchanov et al. 2019's gate) sums them. Calibration batches come from the
*training* split.
"""

from __future__ import annotations

import torch
from torch import Tensor

from prunelab.models import Net, unit_groups
from prunelab.scoring import (
    Batches,
    UnitScores,
    per_unit,
    recording,
    summed_positions,
    unit_gradients,
)


def magnitude_unit_scores(model: Net, batches: Batches = (), norm: str = "l1") -> UnitScores:
    """Norm (L1 by default, or L2) of each unit's incoming weights."""
    p = 1 if norm == "l1" else 2
    modules = dict(model.named_modules())
    return [
        modules[g.producer].weight.detach().flatten(1).norm(p=p, dim=1)
        for g in unit_groups(model)
    ]


def activation_unit_scores(model: Net, batches: Batches, stat: str = "mean") -> UnitScores:
    """Mean post-ReLU activation per unit, or with stat="apoz" 1 − APoZ (Hu et al. 2016):
    the fraction of non-zero outputs, so that, as everywhere here, higher means keep."""
    groups = unit_groups(model)
    sums = [torch.zeros(0)] * len(groups)
    n = 0
    model.eval()
    with torch.no_grad(), recording([model.body[g.activation] for g in groups]) as seen:
        for x, _ in batches:
            seen.clear()
            model(x)
            for i, a in enumerate(seen):
                v = a if stat == "mean" else (a > 0).float()
                total = per_unit(v).sum(0)
                sums[i] = total if n == 0 else sums[i] + total
            n += len(x)
    return [s / n for s in sums]


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


def random_unit_scores(model: Net, batches: Batches = (), seed: int = 0) -> UnitScores:
    g = torch.Generator().manual_seed(seed)
    modules = dict(model.named_modules())
    return [
        torch.rand(modules[u.producer].weight.shape[0], generator=g) for u in unit_groups(model)
    ]
