"""The machinery every criterion shares: score types, activation and gradient recording.

Weight granularity scores are `Scores`: one tensor per weight of every Linear/Conv layer,
keyed by parameter name ("body.1.weight"), same shape as the weight. Neuron granularity
scores are `UnitScores`: one 1-D tensor per hidden layer (see `models.unit_groups`), one
score per neuron or channel. Higher means more important.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from prunelab.models import Net, unit_groups, weighted_layers

Scores = dict[str, Tensor]
UnitScores = list[Tensor]
Batches = Sequence[tuple[Tensor, Tensor]]


def weights_of(model: Net) -> dict[str, Tensor]:
    return {f"{prefix}.weight": m.weight for prefix, m in weighted_layers(model)}


@contextmanager
def recording(modules: Sequence[nn.Module], inputs: bool = False) -> Iterator[list[Tensor]]:
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


def layer_inputs(layer: nn.Module, inp: Tensor) -> Tensor:
    """A Linear's or Conv2d's input as the (rows, features) matrix its weight multiplies:
    a conv's input unfolded into one row per example and output position, its features
    ordered as the weight's flattened (in_channel, kh, kw)."""
    if isinstance(layer, nn.Conv2d):
        if isinstance(layer.padding, str):
            raise ValueError(f"{layer}: padding {layer.padding!r} is not unfolded here")
        cols = F.unfold(inp, layer.kernel_size, layer.dilation, layer.padding, layer.stride)
        return cols.transpose(1, 2).flatten(0, 1)
    return inp.flatten(1)


def incoming_sums(model: Net, scores: Scores) -> UnitScores:
    """Per hidden unit, the sum of its incoming weights' scores (its producer's row)."""
    return [scores[f"{g.producer}.weight"].flatten(1).sum(1) for g in unit_groups(model)]


def summed(per_batch: Iterable[dict[str, Tensor]]) -> dict[str, Tensor]:
    """Key by key, the sum over batches of per-batch tensors."""
    total: dict[str, Tensor] = {}
    for batch in per_batch:
        for k, t in batch.items():
            total[k] = total[k] + t if k in total else t
    return total


def weight_gradients(model: Net, batches: Batches) -> Iterator[dict[str, tuple[Tensor, Tensor]]]:
    """Per calibration batch: each weight (detached) and the gradient of the batch-mean
    cross-entropy with respect to it."""
    weights = weights_of(model)
    model.eval()
    for x, y in batches:
        grads = torch.autograd.grad(F.cross_entropy(model(x), y), list(weights.values()))
        yield {k: (w.detach(), g) for (k, w), g in zip(weights.items(), grads, strict=True)}


def input_rows(model: Net, batches: Batches) -> Iterator[dict[str, Tensor]]:
    """Per calibration batch: each weighted layer's input as the matrix its weight
    multiplies (`layer_inputs`), keyed by the layer's prefix ("body.<i>")."""
    layers = weighted_layers(model)
    model.eval()
    with recording([m for _, m in layers], inputs=True) as seen:
        for x, _ in batches:
            seen.clear()
            with torch.no_grad():
                model(x)
            yield {prefix: layer_inputs(m, inp)
                   for (prefix, m), inp in zip(layers, seen, strict=True)}


def per_unit(t: Tensor) -> Tensor:
    """(N, C) or (N, C, H, W) -> (N, C): a channel's value is the mean over its positions."""
    return t.flatten(2).mean(2) if t.dim() > 2 else t


def summed_positions(t: Tensor) -> Tensor:
    """(N, C) or (N, C, H, W) -> (N, C): a channel's value is the sum over its positions."""
    return t.flatten(2).sum(2) if t.dim() > 2 else t


def unit_gradients(model: Net, batches: Batches) -> Iterator[tuple[list[Tensor], list[Tensor]]]:
    """Per batch: the units' activations and the per-example gradients of the loss wrt them."""
    groups = unit_groups(model)
    model.eval()
    with recording([model.body[g.activation] for g in groups]) as seen:
        for x, y in batches:
            seen.clear()
            loss = F.cross_entropy(model(x), y, reduction="sum")
            acts = list(seen)
            yield [a.detach() for a in acts], list(torch.autograd.grad(loss, acts))
