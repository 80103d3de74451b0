"""Magnitude and activity: criteria from the weights alone, or from the weights and the
activations they see on calibration batches (from the *training* split); the random
control. Higher means keep.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Literal

import torch
from torch import Tensor

from prunelab.criteria.base import Criterion, plain
from prunelab.criteria.registry import Registration, register
from prunelab.criteria.scoring import (
    Batches,
    Scores,
    UnitScores,
    incoming_sums,
    input_rows,
    per_unit,
    recording,
    summed,
    weights_of,
)
from prunelab.models import Net, unit_groups, weighted_layers


def magnitude_scores(model: Net, batches: Batches = ()) -> Scores:
    """|w|."""
    return {k: w.detach().abs() for k, w in weights_of(model).items()}


def activation_weight_scores(model: Net, batches: Batches) -> Scores:
    """|w_ij| × E|x_j|: the weight's magnitude times the mean absolute value of the input
    it multiplies, over calibration examples (for a conv filter tap, its input channel's
    mean over positions). This project's own score: not ShrinkBench's activation criterion
    (|E x|), nor Wanda's |w_ij|·‖x_j‖₂ compared per output row (`wanda_scores`).
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


def input_norms(model: Net, batches: Batches) -> dict[str, Tensor]:
    """Per weighted layer, ‖X_j‖₂ of each input feature j over every calibration example
    (and, for a conv, every position of its unfolded patches): one value per column."""
    sq = summed({k: rows.pow(2).sum(0) for k, rows in batch.items()}
                for batch in input_rows(model, batches))
    return {k: v.sqrt() for k, v in sq.items()}


def wanda_raw(model: Net, batches: Batches) -> Scores:
    """Sun et al. 2023 (Wanda), Eq. 1: S_ij = |W_ij| · ‖X_j‖₂, a filter's taps as the
    columns of its unfolded input."""
    norms = input_norms(model, batches)
    return {f"{prefix}.weight": m.weight.detach().abs() * norms[prefix].view(
                m.weight.shape[1:]) for prefix, m in weighted_layers(model)}


def wanda_scores(model: Net, batches: Batches) -> Scores:
    """Wanda's score compared per output, as the paper prunes ("we compare weights on a
    per-output basis", Sec. 3): each weight's rank within its row (filter), as a fraction
    (r + 1)/d, so that any cut takes the same number from every row, and a global cut the
    same fraction of every layer (Wanda's uniform per-layer sparsity)."""
    out = {}
    for k, s in wanda_raw(model, batches).items():
        flat = s.flatten(1)
        ranks = flat.argsort(dim=1, stable=True).argsort(dim=1, stable=True)
        out[k] = ((ranks + 1).float() / flat.shape[1]).view(s.shape)
    return out


def random_scores(model: Net, batches: Batches = (), seed: int = 0) -> Scores:
    """Seeded uniform scores: the control every comparison needs."""
    g = torch.Generator().manual_seed(seed)
    return {k: torch.rand(w.shape, generator=g).to(w.device) for k, w in weights_of(model).items()}


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


def wanda_unit_scores(model: Net, batches: Batches) -> UnitScores:
    """The sum of Wanda's |W_ij|·‖X_j‖₂ over a unit's incoming weights. Sun et al. define
    Wanda for single weights only; this structured form (a unit's score the sum of its
    weights') is this project's, the same way `magnitude` goes from |w| to a row's L1.
    """
    return incoming_sums(model, wanda_raw(model, batches))


def random_unit_scores(model: Net, batches: Batches = (), seed: int = 0) -> UnitScores:
    g = torch.Generator().manual_seed(seed)
    modules = dict(model.named_modules())
    return [
        torch.rand(modules[u.producer].weight.shape[0], generator=g) for u in unit_groups(model)
    ]


@dataclass(frozen=True)
class MagnitudeSettings:
    neuron_norm: Literal["l1", "l2"] = "l1"  # of a unit's incoming weights


@dataclass(frozen=True)
class ActivationSettings:
    stat: Literal["mean", "apoz"] = "mean"  # units: mean activation, or 1 − APoZ


register(Registration(
    "magnitude", "weights", "score", plain(magnitude_scores),
    lambda c, _seed: Criterion(partial(magnitude_unit_scores, norm=c.neuron_norm)),
    MagnitudeSettings, cite="|w| (Han et al. 2015); units: the L1/L2 norm of incoming weights"))
register(Registration(
    "activation", "input statistics", "score", plain(activation_weight_scores),
    lambda c, _seed: Criterion(partial(activation_unit_scores, stat=c.stat)),
    ActivationSettings, cite="|w|·E|x| (this project's); units: mean activation, or 1 − APoZ "
    "(Hu et al. 2016)"))
register(Registration(
    "wanda", "input statistics", "score", plain(wanda_scores), plain(wanda_unit_scores),
    cite="|W_ij|·‖X_j‖₂ compared per output (Sun et al. 2023, Eq. 1)"))
register(Registration(
    "random", "none", "score",
    lambda _c, seed: Criterion(partial(random_scores, seed=seed)),
    lambda _c, seed: Criterion(partial(random_unit_scores, seed=seed)),
    cite="seeded uniform scores", control=True))
