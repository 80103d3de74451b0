"""Scores for pruning a freshly initialised network, each as its paper defines it.

Unlike the study's criteria (`prunelab.criteria`, read on a trained network and divided
by their layer's mean, `prune.normalize`), these are ranked raw and globally, as their
papers do. Every function returns keep-scores (higher means keep), over the weights named
in `names` (the prunable ones, `masks.prunable_names`); biases are never scored.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from prunelab.criteria.scoring import Batches, Scores, weights_of
from prunelab.models import Net, Normalize
from prunelab.prune.masks import Masks, cut_lowest


def _mean_gradient(model: Net, batches: Batches, weights: list[Tensor],
                   create_graph: bool = False) -> list[Tensor]:
    """∂L/∂w of the loss averaged over the calibration batches (each batch's mean loss)."""
    loss = torch.stack([F.cross_entropy(model(x), y) for x, y in batches]).mean()
    return list(torch.autograd.grad(loss, weights, create_graph=create_graph))


def snip_scores(model: Net, batches: Batches, names: Sequence[str]) -> Scores:
    """SNIP's connection sensitivity (Lee et al. 2019, Eq. 6):
    s_j = |g_j(w; D)| / Σ_k |g_k(w; D)|, g_j = ∂L(c ⊙ w; D)/∂c_j at c = 1, which is
    w_j · ∂L/∂w_j. D is the calibration data as one set (the paper uses one mini-batch): the
    gradient of the mean loss over the batches, then its magnitude; `taylor` instead
    averages |w·g| per batch. The sum in the denominator runs over every scored weight,
    so the scores of a network sum to 1 (the ranking is the raw |w·g|'s)."""
    model.eval()
    weights = {k: w for k, w in weights_of(model).items() if k in names}
    grads = _mean_gradient(model, batches, list(weights.values()))
    raw = {k: (w.detach() * g).abs() for (k, w), g in zip(weights.items(), grads, strict=True)}
    total = sum(float(s.sum(dtype=torch.float64)) for s in raw.values())
    return {k: s / total for k, s in raw.items()}


def grasp_scores(model: Net, batches: Batches, names: Sequence[str]) -> Scores:
    """GraSP (Wang et al. 2020, Eq. 8 and Algorithm 1): S(−θ) = −θ ⊙ Hg, g the gradient of
    the loss and H its Hessian, both with respect to the weights (as the authors' code,
    biases left out); the weights with the *highest* S are removed. Returned as keep-scores,
    −S = θ ⊙ Hg. Hg by double back-propagation: g is computed once and held fixed (v), then
    Hv = ∂(gᵀv)/∂θ, over the same calibration batches. (The authors' code also divides the
    logits by a temperature of 200; the paper does not, nor does this.)"""
    model.eval()
    weights = {k: w for k, w in weights_of(model).items() if k in names}
    params = list(weights.values())
    v = [g.detach() for g in _mean_gradient(model, batches, params)]
    g = _mean_gradient(model, batches, params, create_graph=True)
    gv = torch.stack([(a * b).sum() for a, b in zip(g, v, strict=True)]).sum()
    hv = torch.autograd.grad(gv, params)
    return {k: w.detach() * h for (k, w), h in zip(weights.items(), hv, strict=True)}


def synflow_scores(model: Net, masks: Masks, names: Sequence[str],
                   input_shape: Sequence[int] = (1, 28, 28)) -> Scores:
    """SynFlow's synaptic saliency (Tanaka et al. 2020, Eq. 5 and Algorithm 1), data-free:
    with every weight replaced by |θ ⊙ μ| (μ the current masks), the biases left out and
    the input all ones, R = 1ᵀ(∏_l |θ^[l]|)1 is the network's summed output, and
    S = ∂R/∂θ ⊙ θ (θ the linearised weights). The input normalisation (`Normalize`) is part
    of the data, not the network, so the ones enter the first weighted layer. In float64:
    R is a product over layers (the authors' code does the same)."""
    linear = copy.deepcopy(model).double().eval()
    for i, m in enumerate(linear.body):
        if isinstance(m, Normalize):
            linear.body[i] = nn.Identity()
    weights = weights_of(linear)
    with torch.no_grad():
        for k, w in weights.items():
            w.abs_()
            if k in masks:
                w.mul_(masks[k].to(w.dtype))
        for m in linear.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)) and m.bias is not None:
                m.bias.zero_()
    flow = linear(torch.ones((1, *input_shape), dtype=torch.float64)).sum()
    scored = [weights[k] for k in names]
    grads = torch.autograd.grad(flow, scored)
    return {k: g * w.detach() for k, w, g in zip(names, scored, grads, strict=True)}


def synflow_masks(model: Net, density: float, names: Sequence[str], rounds: int = 100,
                  input_shape: Sequence[int] = (1, 28, 28)) -> Masks:
    """SynFlow's iterative pruning (Tanaka et al. 2020, Algorithm 1): in round k of n the
    scores are recomputed on the masked network and the global top ρ^(−k/n) of the scored
    weights are kept (ρ = 1/density, the compression ratio), an exponential schedule that
    ends at `density`. The authors ran n = 100."""
    if not 0 < density <= 1:
        raise ValueError(f"density must be in (0, 1], got {density}")
    masks: Masks = {}
    for k in range(1, rounds + 1):
        scores = synflow_scores(model, masks, names, input_shape)
        masks = global_keep(scores, density ** (k / rounds))
    return masks


def global_keep(scores: Scores, density: float) -> Masks:
    """Keep the global top `density` of the scored weights, raw scores ranked across
    layers (as SNIP, GraSP and SynFlow do; no per-layer normalisation, ties broken by
    position). A layer may lose every weight ("layer collapse", Tanaka et al. 2020, §3):
    that is an outcome of the method, kept, not refused as `masks.select` would."""
    flat = torch.cat([s.flatten() for s in scores.values()])
    keep = cut_lowest(flat, round((1 - density) * flat.numel()))
    parts = torch.split(keep, [s.numel() for s in scores.values()])
    return {k: part.view(s.shape) for (k, s), part in zip(scores.items(), parts, strict=True)}
