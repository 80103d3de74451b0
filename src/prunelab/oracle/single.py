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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save
from scipy.stats import spearmanr
from torch import Tensor, nn

from prunelab.criteria.registry import lookup
from prunelab.criteria.scoring import Batches
from prunelab.criteria.second_order import layer_hessians
from prunelab.data import Split
from prunelab.models import Net, baked
from prunelab.oracle.truth import Truth, apply_row, halves, loss_of
from prunelab.oracle.unit_sets import set_quality
from prunelab.oracle.weight_sets import weight_set_quality
from prunelab.prune.granularity import Neurons, Weights


@dataclass
class Scores:
    """Every method's scores on one model: per hidden layer its units', per pruned layer
    its weights'."""

    units: dict[str, list[Tensor]]
    weights: dict[str, dict[str, Tensor]]  # the pruned layers' only


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
    base = loss_of(net(x), y)
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
            cut[:, o] += apply_row(layer, inputs, delta.view(1, *layer.weight.shape[1:]))[:, 0]
            damage[i] = loss_of(tail(cut), y) - base
        out[name] = (predicted, damage)
    return out


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


def criteria_against_damage(model: Net, held: Split, calib: Batches,
                            criteria: Mapping[str, tuple[Any, int]], weight_names: list[str],
                            truth: Truth, tick: Callable[[str], None] | None = None
                            ) -> tuple[dict[str, Any], dict[str, Any], Scores]:
    """Every criterion's scores on `model` (from the calibration batches `calib`; each
    with its settings and seed, `criteria`) against the true damage on `held` (`truth`):
    (quality per method, per method and granularity the (scores, damages) of every unit
    and of the sampled weights, for a scatter plot, and each method's scores, for
    `set_level`). A surgeon is also judged by its prediction against the damage after
    its update (`surgeon_damage`). `tick`, if given, hears of each criterion begun."""
    units, weights = truth.units, truth.weights
    quality, scatter = {}, {}
    scores = Scores({}, {})
    surgeons = []
    for i, (method, (settings, seed)) in enumerate(criteria.items()):
        if tick is not None:
            tick(f"scoring {method} ({i + 1} of {len(criteria)} criteria)")
        unit_scores = Neurons().scorer(method, settings, seed)(model, calib)
        weight_scores = Weights().scorer(method, settings, seed)(model, calib)
        scores.units[method] = unit_scores
        scores.weights[method] = {n: weight_scores[n] for n in weight_names}
        quality[method] = criterion_quality(unit_scores, weight_scores, units, weights)
        scatter[method] = {
            "neuron": (torch.cat(unit_scores), torch.cat(units)),
            "weight": (torch.cat([weight_scores[n].flatten()[i]
                                  for n, (i, _) in weights.items()]),
                       torch.cat([d for _, d in weights.values()]))}
        if lookup(method).kind == "surgeon":
            surgeons.append(method)
    for method in surgeons:  # its prediction against the damage after its update
        quality[f"{method} (after its update)"] = {"weight": {
            name: agreement(predicted, d)
            for name, (predicted, d) in surgeon_damage(model, held, calib, weights).items()}}
    return quality, scatter, scores


def set_level(model: Net, held: Split, scores: Scores, ratios: Sequence[float], truth: Truth
              ) -> dict[str, Any]:
    """The set-level oracles of each method's scores on the two halves of `held` (the
    greedy chose on the first, `truth`; every set is scored on the second): units
    (`unit_sets`), and weights (`weight_sets`) where the pruned weights are one layer
    it supports; and the split-half reliability of the single-removal oracle: per layer,
    Spearman's ρ between the damages measured on the two halves (how far its own ranking
    is noise)."""
    choose, score_on = halves(held)
    out = {"sets": set_quality(model, choose, score_on, scores.units, ratios,
                               truth.unit_order),
           "reliability": truth.reliability}
    for name, order in truth.weight_order.items():
        out["weight_sets"] = weight_set_quality(
            model, choose, score_on, name, {m: s[name] for m, s in scores.weights.items()},
            ratios, order=order)
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


SCATTER = "scatter.safetensors"  # one seed's scores and true damages, for the figure


def scatter_bytes(scatter: dict[str, dict[str, tuple[Tensor, Tensor]]]) -> bytes:
    """`criteria_against_damage`'s scatter points (method -> granularity -> (scores,
    damages)) as one safetensors file."""
    return save({f"{method}/{gran}/{part}": t.contiguous()
                 for method, by_gran in scatter.items() for gran, pair in by_gran.items()
                 for part, t in zip(("score", "damage"), pair, strict=True)})


def read_scatter(path: Path) -> dict[str, dict[str, tuple[Tensor, Tensor]]]:
    """`scatter_bytes`'s file back (methods in name order, as safetensors keeps them)."""
    tensors = load_file(str(path))
    out: dict[str, dict[str, tuple[Tensor, Tensor]]] = {}
    for name in dict.fromkeys(k.rsplit("/", 1)[0] for k in tensors):
        method, gran = name.split("/")
        out.setdefault(method, {})[gran] = (tensors[f"{name}/score"], tensors[f"{name}/damage"])
    return out
