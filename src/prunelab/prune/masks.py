"""From scores to masks, and masks onto models (through torch.nn.utils.prune).

A mask keeps what scores at or above the threshold. The threshold is either an absolute
score (as the design document does) or implied by a target sparsity; for a target, units
are ranked and exactly round(sparsity × n) of the lowest are cut, so ties cannot make
the realised sparsity drift from the target. Scope is global (one ranking over all
prunable layers, scores optionally divided by their layer's mean so that layers with
different gradient scales compete fairly) or per layer. Biases are never pruned.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor
from torch.nn.utils import prune

from prunelab.criteria.scoring import UnitScores
from prunelab.errors import PrunelabError
from prunelab.models import Net, unit_groups, weighted_layers

Masks = dict[str, Tensor]  # parameter name -> bool tensor of its shape, True = keep


class PruningError(PrunelabError, ValueError):
    """A threshold or target that would leave a layer with nothing."""


def prunable_names(model: Net, prune_output_layer: bool) -> list[str]:
    names = [f"{prefix}.weight" for prefix, _ in weighted_layers(model)]
    return names if prune_output_layer else names[:-1]


def layer_scales(scores: dict[str, Tensor]) -> dict[str, float]:
    """Each layer's normaliser: the mean of its scores (1.0 where that is 0)."""
    return {k: float(s.float().mean()) or 1.0 for k, s in scores.items()}


def normalized(scores: dict[str, Tensor],
               scales: dict[str, float] | None = None) -> dict[str, Tensor]:
    """Each layer's scores divided by its scale (by default, their mean).

    Iterative pruning passes the scales of its first round on to the later ones: a layer's
    scale is a property of the layer, not of what earlier rounds cut. Recomputed each round,
    a mean over the survivors (or over all weights, zeros included) moves with the layer's
    density, and later rounds drift to another allocation than a one-shot cut would make.
    """
    scales = scales or layer_scales(scores)
    return {k: s / scales[k] for k, s in scores.items()}


def cut_lowest(flat: Tensor, n_cut: int) -> Tensor:
    """Bool keep-mask over a 1-D score tensor that drops exactly the `n_cut` lowest."""
    keep = torch.ones_like(flat, dtype=torch.bool)
    if n_cut > 0:
        keep[torch.argsort(flat, stable=True)[:n_cut]] = False
    return keep


def _ranked(scores: dict[str, Tensor], sparsity: float, scope: str) -> dict[str, Tensor]:
    if scope == "layer":
        return {
            k: cut_lowest(s.flatten(), round(sparsity * s.numel())).view(s.shape)
            for k, s in scores.items()
        }
    flat = torch.cat([s.flatten().float() for s in scores.values()])
    keep = cut_lowest(flat, round(sparsity * flat.numel()))
    out, start = {}, 0
    for k, s in scores.items():
        out[k] = keep[start : start + s.numel()].view(s.shape)
        start += s.numel()
    return out


def _check(keep: dict[str, Tensor], scores: dict[str, Tensor], what: str, unit: str) -> None:
    for k, m in keep.items():
        if not bool(m.any()):
            s = scores[k]
            raise PruningError(
                f"{what} would cut every {unit} of {k} "
                f"(its scores range over [{float(s.min()):.4g}, {float(s.max()):.4g}]); "
                "lower the threshold or sparsity, or use prune.scope: layer"
            )
    if all(bool(m.all()) for m in keep.values()):
        lo = min(float(s.min()) for s in scores.values())
        hi = max(float(s.max()) for s in scores.values())
        warnings.warn(f"{what} cuts nothing (scores range over [{lo:.4g}, {hi:.4g}])",
                      stacklevel=3)


def select(
    scores: dict[str, Tensor], *, sparsity: float | None = None, threshold: float | None = None,
    scope: str = "global", normalize: bool = True, unit: str = "weight",
    scales: dict[str, float] | None = None,
) -> dict[str, Tensor]:
    """Keep-masks from scores, by target sparsity or absolute threshold (exactly one);
    `scales` are the normalisers when `normalize` (default: each layer's mean)."""
    if (sparsity is None) == (threshold is None):
        raise ValueError("give exactly one of sparsity or threshold")
    ranked = normalized(scores, scales) if normalize else scores
    if threshold is not None:
        keep = {k: s >= threshold for k, s in ranked.items()}
        what = f"threshold {threshold:g}"
    else:
        assert sparsity is not None  # exactly one of the two, checked above
        keep = _ranked(ranked, sparsity, scope)
        what = f"sparsity {sparsity:g}"
    _check(keep, ranked, what, unit)
    return keep


def unit_layer_names(unit_scores: UnitScores) -> list[str]:
    return [f"layer{i}" for i in range(len(unit_scores))]


def select_units(
    unit_scores: UnitScores, round_to: int = 1, *, sparsity: float | None = None,
    threshold: float | None = None, scope: str = "global", normalize: bool = True,
    scales: dict[str, float] | None = None,
) -> list[Tensor]:
    """One bool vector per hidden layer: which neurons/channels stay.

    With `round_to` > 1, each layer keeps its top units in a number rounded to the nearest
    multiple of `round_to` (Torch-Pruning's `round_to`): dense kernels are fast only at
    such widths (on this project's CPU a 784→51 layer ran slower than 784→64). A layer
    left whole, or keeping fewer than `round_to` units, is not rounded.
    """
    keyed = dict(zip(unit_layer_names(unit_scores), unit_scores, strict=True))
    keep = list(select(keyed, sparsity=sparsity, threshold=threshold, scope=scope,
                       normalize=normalize, unit="unit", scales=scales).values())
    if round_to == 1:
        return keep
    out = []
    for k, scores in zip(keep, unit_scores, strict=True):
        n, width = int(k.sum()), k.numel()
        if n < round_to or n == width:
            out.append(k)
            continue
        n = min(width, round_to * round(n / round_to))
        top = torch.argsort(scores.float(), descending=True, stable=True)[:n]
        rounded = torch.zeros_like(k)
        rounded[top] = True
        out.append(rounded)
    return out


def unit_masks(model: Net, keep: list[Tensor]) -> Masks:
    """Weight masks that silence cut units: their producer rows and their consumer columns.

    The consumer columns matter: a unit with zeroed incoming weights still emits
    ReLU(bias), so only masking what reads it makes the masked model equal the smaller one.
    """
    modules = dict(model.named_modules())
    masks: Masks = {}
    for g, k in zip(unit_groups(model), keep, strict=True):
        prod = modules[g.producer].weight
        rows = k.view((-1,) + (1,) * (prod.dim() - 1)).expand(prod.shape)
        name = f"{g.producer}.weight"
        masks[name] = masks.get(name, torch.ones_like(prod, dtype=torch.bool)) & rows
        cons = modules[g.consumer].weight
        cols = k.repeat_interleave(g.span).view((1, -1) + (1,) * (cons.dim() - 2))
        cname = f"{g.consumer}.weight"
        masks[cname] = masks.get(cname, torch.ones_like(cons, dtype=torch.bool)) & cols.expand(
            cons.shape
        )
    return masks


def apply_masks(model: Net, masks: Masks) -> Net:
    """Hold masks on `model` with torch.nn.utils.prune: every forward uses weight_orig·mask,
    so cut weights are exactly zero during fine-tuning whatever the optimizer does."""
    modules = dict(model.named_modules())
    for name, mask in masks.items():
        prefix, param = name.rsplit(".", 1)
        module = modules[prefix]
        # torch's prune module is unannotated; custom_from_mask(module, name, mask) -> module
        prune.custom_from_mask(module, param, mask.to(module.weight.device))  # type: ignore[no-untyped-call]
    return model


def matched_random_masks(reference: Masks, seed: int = 0) -> Masks:
    """Random masks with exactly the per-layer sparsity of `reference` (a method's masks):
    the control that separates *where* a method cuts from *how much* per layer."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, m in reference.items():
        n_cut = int((~m).sum())
        out[k] = cut_lowest(torch.rand(m.numel(), generator=g), n_cut).view(m.shape)
    return out
