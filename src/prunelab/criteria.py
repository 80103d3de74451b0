"""Pruning criteria: each maps a model (and calibration data) to importance scores.

Weight granularity returns `Scores`: one tensor per weight of every Linear/Conv layer,
keyed by parameter name ("body.1.weight"), same shape as the weight. Neuron granularity
returns `UnitScores`: one 1-D tensor per hidden layer (see `models.unit_groups`), one
score per neuron or channel. Higher means more important; what is cut, and how many, is
decided elsewhere (`masks`). Calibration batches come from the *training* split.

Conventions, so that scores are comparable across batches and batch sizes:
- weight gradients are of the batch-mean loss, averaged over batches as |g| (gradient)
  or |w·g| (taylor, ShrinkBench's "MagGrad", SNIP's sensitivity);
- unit gradients are per example (the loss summed over the batch), so ∂L/∂a for an
  example is that example's own gradient; spatial positions of a channel are averaged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from prunelab.models import Net, unit_groups, weighted_layers

Scores = dict[str, Tensor]
UnitScores = list[Tensor]
Batches = Sequence[tuple[Tensor, Tensor]]


@dataclass(frozen=True)
class CriterionSettings:
    """What some criteria need beyond the model and the batches."""

    seed: int  # random: the generator's seed
    neuron_norm: str  # magnitude, neuron granularity: "l1" | "l2"
    activation_stat: str  # activation, neuron granularity: "mean" | "apoz"


def _weights(model: Net) -> dict[str, nn.Parameter]:
    return {f"{prefix}.weight": m.weight for prefix, m in weighted_layers(model)}


@contextmanager
def _recording(modules: Sequence[nn.Module], inputs: bool = False) -> Iterator[list[Tensor]]:
    """Record each module's output (or first input) on every forward, in module order."""
    seen: list[Tensor] = []
    if inputs:
        hooks = [m.register_forward_pre_hook(lambda _m, a: seen.append(a[0])) for m in modules]
    else:
        hooks = [m.register_forward_hook(lambda _m, _a, out: seen.append(out)) for m in modules]
    try:
        yield seen
    finally:
        for h in hooks:
            h.remove()


def _per_unit(t: Tensor) -> Tensor:
    """(N, C) or (N, C, H, W) -> (N, C): a channel's value is the mean over its positions."""
    return t.flatten(2).mean(2) if t.dim() > 2 else t


# ---------------------------------------------------------------- weight granularity


def magnitude_scores(model: Net, batches: Batches = ()) -> Scores:
    """|w|."""
    return {k: w.detach().abs() for k, w in _weights(model).items()}


def gradient_scores(model: Net, batches: Batches) -> Scores:
    """Mean over calibration batches of |∂L/∂w| (L the batch-mean cross-entropy)."""
    weights = _weights(model)
    total = {k: torch.zeros_like(w) for k, w in weights.items()}
    model.eval()
    for x, y in batches:
        grads = torch.autograd.grad(F.cross_entropy(model(x), y), list(weights.values()))
        for k, g in zip(weights, grads, strict=True):
            total[k] += g.abs()
    return {k: t / len(batches) for k, t in total.items()}


def taylor_scores(model: Net, batches: Batches) -> Scores:
    """Mean over batches of |w·∂L/∂w|, the first-order Taylor estimate of the loss change."""
    grads = gradient_scores(model, batches)
    return {k: w.detach().abs() * grads[k] for k, w in _weights(model).items()}


def activation_weight_scores(model: Net, batches: Batches) -> Scores:
    """|w| × mean |input activation| of the input it multiplies (ShrinkBench's "MagAct").

    For a conv filter tap, the input activation is its input channel's mean over positions.
    """
    layers = weighted_layers(model)
    sums = [torch.zeros(m.weight.shape[1], device=m.weight.device) for _, m in layers]
    n = 0
    model.eval()
    with torch.no_grad(), _recording([m for _, m in layers], inputs=True) as seen:
        for x, _ in batches:
            seen.clear()
            model(x)
            for i, inp in enumerate(seen):
                sums[i] += _per_unit(inp.abs()).sum(0)
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
    return {k: torch.rand(w.shape, generator=g).to(w.device) for k, w in _weights(model).items()}


# ---------------------------------------------------------------- neuron granularity


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
    with torch.no_grad(), _recording([model.body[g.activation] for g in groups]) as seen:
        for x, _ in batches:
            seen.clear()
            model(x)
            for i, a in enumerate(seen):
                v = a if stat == "mean" else (a > 0).float()
                total = _per_unit(v).sum(0)
                sums[i] = total if n == 0 else sums[i] + total
            n += len(x)
    return [s / n for s in sums]


def _unit_gradients(model: Net, batches: Batches) -> Iterator[tuple[list[Tensor], list[Tensor]]]:
    """Per batch: the units' activations and the per-example gradients of the loss wrt them."""
    groups = unit_groups(model)
    model.eval()
    with _recording([model.body[g.activation] for g in groups]) as seen:
        for x, y in batches:
            seen.clear()
            loss = F.cross_entropy(model(x), y, reduction="sum")
            acts = list(seen)
            yield [a.detach() for a in acts], list(torch.autograd.grad(loss, acts))


def gradient_unit_scores(model: Net, batches: Batches) -> UnitScores:
    """Mean over examples (and positions) of |∂L/∂a| for each unit's activation a."""
    sums: list[Tensor] | None = None
    n = 0
    for _, grads in _unit_gradients(model, batches):
        batch = [_per_unit(g.abs()).sum(0) for g in grads]
        sums = batch if sums is None else [s + b for s, b in zip(sums, batch, strict=True)]
        n += len(grads[0])
    assert sums is not None, "gradient scores need at least one calibration batch"
    return [s / n for s in sums]


def taylor_unit_scores(model: Net, batches: Batches) -> UnitScores:
    """|mean over examples of a·∂L/∂a| per unit (Molchanov et al. 2017)."""
    sums: list[Tensor] | None = None
    n = 0
    for acts, grads in _unit_gradients(model, batches):
        batch = [_per_unit(a * g).sum(0) for a, g in zip(acts, grads, strict=True)]
        sums = batch if sums is None else [s + b for s, b in zip(sums, batch, strict=True)]
        n += len(acts[0])
    assert sums is not None, "taylor scores need at least one calibration batch"
    return [(s / n).abs() for s in sums]


def random_unit_scores(model: Net, batches: Batches = (), seed: int = 0) -> UnitScores:
    g = torch.Generator().manual_seed(seed)
    modules = dict(model.named_modules())
    return [
        torch.rand(modules[u.producer].weight.shape[0], generator=g) for u in unit_groups(model)
    ]


Scorer = Callable[[Net, Batches], "Scores | UnitScores"]

# name -> builder of a scorer with its settings bound (Torch-Pruning's importance objects),
# so that scoring is one call, `scorer(model, batches)`, whatever the criterion.
WEIGHT_CRITERIA: dict[str, Callable[[CriterionSettings], Scorer]] = {
    "gradient": lambda c: gradient_scores,
    "taylor": lambda c: taylor_scores,
    "magnitude": lambda c: magnitude_scores,
    "activation": lambda c: activation_weight_scores,
    "random": lambda c: partial(random_scores, seed=c.seed),
}
UNIT_CRITERIA: dict[str, Callable[[CriterionSettings], Scorer]] = {
    "gradient": lambda c: gradient_unit_scores,
    "taylor": lambda c: taylor_unit_scores,
    "magnitude": lambda c: partial(magnitude_unit_scores, norm=c.neuron_norm),
    "activation": lambda c: partial(activation_unit_scores, stat=c.activation_stat),
    "random": lambda c: partial(random_unit_scores, seed=c.seed),
}
CRITERIA = {"weight": WEIGHT_CRITERIA, "neuron": UNIT_CRITERIA}


def build_scorer(method: str, granularity: str, settings: CriterionSettings) -> Scorer:
    """The criterion named in params.yaml (`prune.methods` × `granularities`), its
    settings bound: call it with (model, calibration batches)."""
    table = CRITERIA[granularity]
    if method not in table:
        raise ValueError(f"unknown method {method!r}; choose one of {sorted(table)}")
    return table[method](settings)
