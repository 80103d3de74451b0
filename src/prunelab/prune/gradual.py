"""Pruning during fine-tuning (gmp, movement; what they rank by is in
`criteria.during_finetuning`): the mask tightens while the model fine-tunes.

The schedule is Zhu & Gupta 2017's, Eq. 1: s_t = s_f + (s_i − s_f)(1 − (t − t_0)/(nΔt))³,
with s_i = 0 and t_0 = 0 (the cut starts with fine-tuning), nΔt = `gradual_end` of the
fine-tuning steps (the steps after it fine-tune at the final mask, as Sanh et al.'s
cool-down), Δt = `gradual_interval` steps, and an update exactly at nΔt so the target is
met. The budget is the one-shot methods' fine-tuning: the same epochs, lr, batches and
seed, so every method gets the same training.

Each pruned weight gets a gate (torch.nn.utils.parametrize: its module's `weight` is then
W ⊙ M, and the optimizer moves W). The gate's backward passes ∂L/∂W′ ⊙ M on to W, so a cut
weight does not move, and accumulates S ← S − ∂L/∂W′ ⊙ W, the gradient straight through
the mask (Sanh et al. Sec. 3): the movement score, kept for every method, read by those
that rank by it. At neuron granularity the gates mask a cut unit's row and the consumer's
columns, and the smaller dense model is built at the end (`surgery`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from prunelab.criteria.base import Live
from prunelab.data import Split
from prunelab.methods import key
from prunelab.models import Net
from prunelab.prune.granularity import GRANULARITIES, Pruned
from prunelab.prune.spec import PruneSettings
from prunelab.training import EpochResult, FitSettings, fit


def cubic_sparsity(step: int, final: float, end_step: int) -> float:
    """Zhu & Gupta's s_t with s_i = 0, t_0 = 0, nΔt = `end_step`: s_f from `end_step` on."""
    if step >= end_step:
        return final
    return final * (1.0 - (1.0 - step / end_step) ** 3)


class _MaskStraightThrough(torch.autograd.Function):
    """W ⊙ M forward; backward: ∂L/∂W′ ⊙ M to W, and S ← S − ∂L/∂W′ ⊙ W on the side."""

    @staticmethod
    def forward(ctx: Any, w: Tensor, mask: Tensor, movement: Tensor) -> Tensor:
        ctx.save_for_backward(w, mask)
        ctx.movement = movement
        return w * mask

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        w, mask = ctx.saved_tensors
        ctx.movement.sub_(grad * w)
        return grad * mask, None, None


class Gate(nn.Module):
    """The parametrization of one pruned weight: its mask and its movement score."""

    mask: Tensor
    movement: Tensor

    def __init__(self, weight: Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", torch.ones_like(weight))
        self.register_buffer("movement", torch.zeros_like(weight))

    def forward(self, w: Tensor) -> Tensor:
        out: Tensor = _MaskStraightThrough.apply(w, self.mask, self.movement)
        return out


def prune_during_finetuning(
    model: Net, train: Split, val: Split, s: PruneSettings, ft: FitSettings, seed: int,
    live: Live[Any], on_epoch: Callable[[EpochResult], None] | None = None,
) -> Pruned:
    """`model` (a dense copy; changed in place) fine-tuned with `ft` seeded `seed` while it
    is cut to `s.sparsity` on the cubic schedule, ranking by `live` at each update."""
    if s.sparsity is None:
        raise ValueError(f"{s.method} prunes to a target sparsity, not a threshold: remove "
                         f"prune.thresholds['{key(s.method, s.granularity)}']")
    if s.gradual_interval is None or s.gradual_end is None:
        raise ValueError(f"{s.method}: give gradual_interval and gradual_end (prune section)")
    target, interval = s.sparsity, s.gradual_interval
    granularity = GRANULARITIES[s.granularity]
    modules = dict(model.named_modules())
    gates: dict[str, Gate] = {}
    for name in granularity.gated(model, s):
        module = modules[name.rsplit(".", 1)[0]]
        gates[name] = Gate(module.weight.detach())
        parametrize.register_parametrization(module, "weight", gates[name])
    end = max(1, round(s.gradual_end * ft.epochs * math.ceil(len(train) / ft.batch_size)))
    state: dict[str, Any] = {"step": 0, "kept": {}, "sparsity": 0.0}

    @torch.no_grad()
    def update(sparsity: float) -> None:
        scores = live(model, {k: g.movement for k, g in gates.items()})
        with warnings.catch_warnings():  # "cuts nothing" at the schedule's first steps
            warnings.simplefilter("ignore")
            state["kept"], masks = granularity.live_cut(model, scores, sparsity, s)
        for k, gate in gates.items():
            gate.mask.copy_(masks[k])
        state["sparsity"] = sparsity

    def on_step() -> None:
        state["step"] += 1
        t = state["step"]
        if t <= end and (t % interval == 0 or t == end):
            update(cubic_sparsity(t, target, end))

    fit(model, train, val, ft, seed, on_epoch=on_epoch, desc="gradual", on_step=on_step)
    if state["sparsity"] != target:  # fewer steps than the schedule (epochs: 0)
        update(target)
    for name in gates:
        module = modules[name.rsplit(".", 1)[0]]
        parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
    kept: dict[str, Tensor] = state["kept"]
    return granularity.finish(model, kept)
