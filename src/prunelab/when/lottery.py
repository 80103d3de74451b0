"""Lottery tickets: iterative magnitude pruning with rewinding (Frankle & Carbin 2019;
Frankle et al. 2020), and the controls that test them.

A ticket is found by rounds of: train, cut a fraction of each layer's surviving weights
with the lowest |w|, rewind the survivors to their values at iteration k (k = 0 in the
original paper; later k in "Linear Mode Connectivity and the Lottery Ticket Hypothesis"),
train again. The controls keep the mask and change the weights: `reinitialised` (Frankle
& Carbin's random re-initialisation, and the reinitialisation check of Frankle et al. 2021
for pruning at initialisation); the within-layer shuffle of Frankle et al. 2021 keeps only
each layer's density (`prune.masks.matched_random_masks`).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch
from torch import nn

from prunelab.models import Net, baked, weighted_layers
from prunelab.prune.masks import Masks, apply_masks, cut_lowest

# The study's per-round fraction: three rounds halve what remains, so every third round
# lands on the 1/r ladder of `sweep.ratios` (2×, 4×, 8×, ...).
LADDER_RATE = 1 - 2 ** (-1 / 3)


def layer_rates(names: Sequence[str], rate: float, output_rate: float | None = None
                ) -> dict[str, float]:
    """Each pruned layer's fraction of survivors cut per round: `rate` (Frankle & Carbin's
    p, 20 % for LeNet-300-100), the output layer (the last name) at `output_rate` (they
    used p/2 there; None: the same rate)."""
    rates = dict.fromkeys(names, rate)
    if output_rate is not None and names:
        rates[names[-1]] = output_rate
    return rates


def rounds_to(density: float, rate: float) -> int:
    """How many rounds of cutting `rate` of what remains reach `density` (rounded)."""
    return round(math.log(density) / math.log(1 - rate))


def magnitude_round(model: Net, masks: Masks, rates: dict[str, float]) -> Masks:
    """One round of IMP (Frankle & Carbin 2019, §1, step 3): in each layer of `rates`,
    cut round(p × survivors) of the surviving weights with the lowest |w| (w the trained
    weights), a layer at a time (their LeNet rule; global for deep nets in their §5).
    The current masks are an argument (OpenLTH's `prune`), what was cut stays cut."""
    weights = {f"{p}.weight": m.weight for p, m in weighted_layers(model)}
    out = dict(masks)
    for name, rate in rates.items():
        w = weights[name].detach()
        alive = masks.get(name, torch.ones_like(w, dtype=torch.bool))
        magnitude = torch.where(alive, w.abs(), torch.tensor(-math.inf))
        n_cut = int((~alive).sum()) + round(rate * int(alive.sum()))
        out[name] = cut_lowest(magnitude.flatten(), n_cut).view(w.shape)
    return out


def rewound(snapshot: Net, masks: Masks) -> Net:
    """The ticket: a copy of `snapshot` (every parameter at iteration k, biases included)
    with `masks` held on it, so each survivor starts again from its exact value at k and
    each cut weight is zero whatever the optimiser does."""
    return apply_masks(copy.deepcopy(snapshot), masks)


def reinitialised(model: Net, masks: Masks, seed: int) -> Net:
    """The control: the same architecture and masks with fresh weights drawn as at
    initialisation (each layer's `reset_parameters`, torch's default, as `build_model`),
    seeded, the caller's random state untouched (any masks on `model` are folded first)."""
    with torch.random.fork_rng(devices=[]):
        fresh = baked(model)  # draws a model's initialisation: inside, to leave no trace
        torch.manual_seed(seed)
        for m in fresh.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                m.reset_parameters()
    return apply_masks(fresh, masks)
