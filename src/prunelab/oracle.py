"""How well does each criterion predict the real damage of removing what it scores?

The "oracle" of Molchanov et al. 2017 (§2.2, and Fig. 2's correlations): the true change
of the loss when one unit — or one weight — alone is removed from the trained model,
measured on held-out data (the validation split, carved from training; never test).
Each criterion's scores on the same model are then compared with it: Spearman's ρ per
layer, and the share of the truly least important half that the criterion also ranks in
its bottom half.

OBS predicts the damage of a removal followed by its own update of what is left; it is
also judged against that (`surgeon_damage`). Removing a unit zeroes its post-ReLU
activation, exactly what `surgery.remove_units` does to the model. The network is cut at
the layer concerned, so each removal costs one pass of the layers after it, in float64
so that single-weight damages of 1e-6 are resolved.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from scipy.stats import spearmanr
from torch import Tensor, nn

from prunelab.criteria import CriterionSettings
from prunelab.criteria.second_order import layer_hessians
from prunelab.data import Split
from prunelab.granularity import Neurons, Weights
from prunelab.models import Net, baked, unit_groups
from prunelab.scoring import Batches
from prunelab.set_oracle import set_quality
from prunelab.weight_sets import supported, weight_set_quality

SAMPLE_SEED_OFFSET = 1_000_003
SURGEON = "obs (after its update)"  # the oracle table's row of `surgeon_damage`


@dataclass
class Scores:
    """Every method's scores on one model: per hidden layer its units', per pruned layer
    its weights'."""

    units: dict[str, list[Tensor]]
    weights: dict[str, dict[str, Tensor]]  # the pruned layers' only


def _loss(logits: Tensor, y: Tensor) -> float:
    return float(F.cross_entropy(logits, y))


@torch.no_grad()
def unit_damage(model: Net, data: Split) -> list[Tensor]:
    """Per hidden layer, per unit: mean loss with that unit removed minus the loss."""
    net = baked(model).double().eval()
    x, y = data.x.double(), data.y
    base = _loss(net(x), y)
    out = []
    for g in unit_groups(net):
        acts = net.body[: g.activation + 1](x)
        tail = net.body[g.activation + 1:]
        damage = torch.empty(acts.shape[1], dtype=torch.float64)
        for k in range(acts.shape[1]):
            cut = acts.clone()
            cut[:, k] = 0
            damage[k] = _loss(tail(cut), y) - base
        out.append(damage)
    return out


@torch.no_grad()
def weight_damage(model: Net, data: Split, names: list[str], per_layer: int,
                  seed: int) -> dict[str, tuple[Tensor, Tensor]]:
    """Per layer in `names`: (flat indices of `per_layer` weights sampled uniformly, the
    mean loss with that weight alone zeroed minus the loss)."""
    net = baked(model).double().eval()
    x, y = data.x.double(), data.y
    base = _loss(net(x), y)
    # A seed of its own: seeded like the random criterion's scores, the sample would be
    # correlated with them (ρ(random) came out 0.05 ± 0.01 on every seed of the mlp).
    g = torch.Generator().manual_seed(SAMPLE_SEED_OFFSET + seed)
    out = {}
    for name in names:
        index = int(name.split(".")[1])
        layer = net.body[index]
        assert isinstance(layer, (nn.Linear, nn.Conv2d)), name  # a weighted layer's name
        inputs = net.body[:index](x)
        z = layer(inputs)
        tail = net.body[index + 1:]
        w = layer.weight
        picks = torch.randperm(w.numel(), generator=g)[:per_layer]
        damage = torch.empty(len(picks), dtype=torch.float64)
        for i, flat in enumerate(picks.tolist()):
            pos = torch.unravel_index(torch.tensor(flat), w.shape)
            only = torch.zeros_like(w)
            only[pos] = w[pos]
            # z without that weight: subtract its contribution to its output unit only.
            o = int(pos[0])
            part = _apply(layer, inputs, only[o:o + 1])
            cut = z.clone()
            cut[:, o] -= part[:, 0]
            damage[i] = _loss(tail(cut), y) - base
        out[name] = (picks, damage)
    return out


@torch.no_grad()
def surgeon_damage(model: Net, data: Split, calib: Batches,
                   weights: dict[str, tuple[Tensor, Tensor]]) -> dict[str, tuple[Tensor, Tensor]]:
    """OBS judged after its own update (Hassibi & Stork 1993, Eq. 5): per layer, for the
    weights `weight_damage` sampled, (the predicted cost ½·w_q²/[H⁻¹]_qq, the true mean
    loss change when w_q is removed *and* the rest of its row is updated by
    δ = −(w_q/[H⁻¹]_qq)·H⁻¹[:, q]). H is the layer's damped input Hessian from the
    calibration batches, as the `obs` criterion builds it."""
    net = baked(model).double().eval()
    x, y = data.x.double(), data.y
    base = _loss(net(x), y)
    hessians = layer_hessians(model, calib)
    out = {}
    for name, (picks, _) in weights.items():
        index = int(name.split(".")[1])
        layer = net.body[index]
        assert isinstance(layer, (nn.Linear, nn.Conv2d)), name
        h_inv = torch.linalg.inv(hessians[name.rsplit(".", 1)[0]])
        inputs = net.body[:index](x)
        z = layer(inputs)
        tail = net.body[index + 1:]
        rows = layer.weight.reshape(len(layer.weight), -1)
        predicted = torch.empty(len(picks), dtype=torch.float64)
        damage = torch.empty(len(picks), dtype=torch.float64)
        for i, flat in enumerate(picks.tolist()):
            o, q = divmod(flat, rows.shape[1])
            w_q, d_qq = float(rows[o, q]), float(h_inv[q, q])
            predicted[i] = 0.5 * w_q ** 2 / d_qq
            delta = -(w_q / d_qq) * h_inv[:, q]  # δ_q = −w_q: the weight is removed
            cut = z.clone()
            cut[:, o] += _apply(layer, inputs, delta.view(1, *layer.weight.shape[1:]))[:, 0]
            damage[i] = _loss(tail(cut), y) - base
        out[name] = (predicted, damage)
    return out


def _apply(layer: nn.Module, inputs: Tensor, weight: Tensor) -> Tensor:
    """The layer's map with `weight` (one output unit's row or filter) and no bias."""
    if isinstance(layer, nn.Conv2d):
        return F.conv2d(inputs, weight, stride=layer.stride, padding=layer.padding)
    return F.linear(inputs, weight)


def agreement(scores: Tensor, damage: Tensor) -> dict[str, float]:
    """Spearman's ρ between scores and the true (signed) loss increase — what pruning needs,
    since a unit whose removal lowers the loss is the best to cut — and with its magnitude
    |Δloss| (Molchanov et al. 2017's oracle, which first-order criteria estimate); and the
    share of the truly least important half (lowest increase) that the scores also put in
    their bottom half."""
    s, d = scores.double().cpu(), damage.double().cpu()
    half = len(d) // 2
    truly_low = set(torch.argsort(d, stable=True)[:half].tolist())
    ranked_low = set(torch.argsort(s, stable=True)[:half].tolist())
    rho = float(spearmanr(s.numpy(), d.numpy()).statistic)
    rho_abs = float(spearmanr(s.numpy(), d.abs().numpy()).statistic)
    return {"spearman": rho, "spearman_abs": rho_abs,
            "bottom_half": len(truly_low & ranked_low) / max(half, 1)}


def criterion_quality(unit_scores: list[Tensor] | None, weight_scores: dict[str, Tensor] | None,
                      units: list[Tensor], weights: dict[str, tuple[Tensor, Tensor]]
                      ) -> dict[str, Any]:
    """Per layer, the `agreement` of one criterion's scores with the oracle's damage."""
    out: dict[str, Any] = {}
    if unit_scores is not None:
        out["neuron"] = {f"layer{i}": agreement(s, d)
                         for i, (s, d) in enumerate(zip(unit_scores, units, strict=True))}
    if weight_scores is not None:
        out["weight"] = {name: agreement(weight_scores[name].flatten()[picks], d)
                         for name, (picks, d) in weights.items()}
    return out


def criteria_against_damage(model: Net, held: Split, calib: Batches, methods: Sequence[str],
                            criterion: CriterionSettings, weight_names: list[str],
                            weights_per_layer: int, seed: int
                            ) -> tuple[dict[str, Any], dict[str, Any], Scores]:
    """Every method's scores on `model` (from the calibration batches `calib`) against the
    true damage on `held`: (quality per method, per method and granularity the (scores,
    damages) of every unit and of the sampled weights, for a scatter plot, and each
    method's scores, for `set_level`)."""
    units = unit_damage(model, held)
    weights = weight_damage(model, held, weight_names, weights_per_layer, seed)
    quality, scatter = {}, {}
    scores = Scores({}, {})
    for method in methods:
        unit_scores = Neurons().scorer(method, criterion)(model, calib)
        weight_scores = Weights().scorer(method, criterion)(model, calib)
        scores.units[method] = unit_scores
        scores.weights[method] = {n: weight_scores[n] for n in weight_names}
        quality[method] = criterion_quality(unit_scores, weight_scores, units, weights)
        scatter[method] = {
            "neuron": (torch.cat(unit_scores), torch.cat(units)),
            "weight": (torch.cat([weight_scores[n].flatten()[i]
                                  for n, (i, _) in weights.items()]),
                       torch.cat([d for _, d in weights.values()]))}
    if "obs" in methods:  # its prediction against the damage after its update
        quality[SURGEON] = {"weight": {name: agreement(predicted, d) for name, (predicted, d)
                                       in surgeon_damage(model, held, calib, weights).items()}}
    return quality, scatter, scores


def set_level(model: Net, held: Split, scores: Scores, ratios: Sequence[float]
              ) -> dict[str, Any]:
    """The set-level oracles of each method's scores on the two halves of `held` (the
    greedy chooses on the first, every set is scored on the second): units
    (`set_oracle`), and weights (`weight_sets`) where the pruned weights are one layer
    it supports; and the split-half reliability of the single-removal oracle: per layer,
    Spearman's ρ between the damages measured on the two halves (how far its own ranking
    is noise)."""
    half = len(held) // 2
    choose, score_on = held.take(half), Split(held.x[half:], held.y[half:])
    reliability = {f"layer{i}": float(spearmanr(a.numpy(), b.numpy()).statistic)
                   for i, (a, b) in enumerate(zip(unit_damage(model, choose),
                                                  unit_damage(model, score_on), strict=True))}
    out = {"sets": set_quality(model, choose, score_on, scores.units, ratios),
           "reliability": reliability}
    names = {n for s in scores.weights.values() for n in s}
    if len(names) == 1 and supported(model, name := names.pop()):
        out["weight_sets"] = weight_set_quality(
            model, choose, score_on, name, {m: s[name] for m, s in scores.weights.items()},
            ratios)
    return out


def mean_sd_tree(trees: list[dict[str, Any]]) -> dict[str, Any]:
    """Nested dicts of numbers (one per seed, same shape) -> the same shape with each
    number replaced by {"mean": ..., "sd": ...} over the seeds (sample sd; 0 for one)."""
    first = trees[0]
    if not isinstance(first, dict):
        values = [float(t) for t in trees]
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        return {"mean": statistics.fmean(values), "sd": sd}
    return {k: mean_sd_tree([t[k] for t in trees]) for k in first}
