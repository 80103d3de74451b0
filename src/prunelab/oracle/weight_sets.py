"""The set-level oracle for single weights: greedy in blocks (issue 23).

The unit oracle (`unit_sets`) removes one unit at a time, re-evaluating every remaining
unit after each removal. One weight at a time is out of reach (the mlp's pruned layer has
100,352 weights), so here the greedy removes a *block* per step: it measures, for every
remaining weight, the exact held-out loss with that weight alone removed on top of those
already removed, removes the `BLOCK` share of the remaining weights (5 %: 5,018 of the
mlp's at the first step, 251 at 95 % sparsity, 68 steps to 97 %) whose removals change
the loss least, and measures again. Blocks shrink with what is left, as the sweep's ratios
are log-spaced. Its first k removals are its set of k; like the unit oracle it chooses on
one half of the held-out images and every set is scored on the other.

Least change in magnitude (|Δloss|, Molchanov et al. 2017's oracle), not the signed
change the one-at-a-time unit greedy minimises: within a block the removals are measured
one by one, and a block of weights each of whose removal alone *lowers* the loss is one
large step along −w·g that overshoots (seed 0 of the mlp, signed, 5 % blocks: the greedy's
50 % set kept 80.9 % of the scoring half right, magnitude's 97.6 %; by |Δloss|: 97.0 %).
The damages are computed in float32 (against float64 on a trained mlp: Spearman's ρ
0.99999999, the same 1,000 lowest), the sets scored in float64.

Exact and cheap where the pruned layer reaches the logits through one ReLU and the output
layer (the mlp's only pruned layer): removing w_ji changes only unit j's pre-activation, by
−w_ji·x_i, hence the logits by V[:, j]·Δa_j, and the loss of an image by
log(1 + Σ_c p_c·expm1(Δa_j·V_cj)) − Δa_j·V_yj (p: its softmax), exactly 0 where Δa_j = 0.
A layer deeper in the network would need a pass of the rest of it per weight, ~10⁵ passes
per step: such layers get no weight oracle (`supported`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from prunelab.data import Split
from prunelab.models import Net, baked
from prunelab.oracle.unit_sets import beside_greedy, loss_accuracy
from prunelab.ratios import ratio_sparsity

# Of the remaining weights removed per greedy step. Seed 0 of the mlp, held-out accuracy
# of the greedy's set at 2, 4, 8, 16, 32x: 10 % blocks 96.8, 95.7, 94.1, 92.0, 88.6; 5 %
# 96.96, 95.8, 94.9, 94.5, 93.7 (magnitude's 97.6, 97.2, 95.5, 92.6, 85.6) at twice the
# time (~2 min a seed alone): finer blocks make a stronger oracle where sets are large.
BLOCK = 0.05


def supported(model: Net, name: str) -> bool:
    """Whether layer `name` (e.g. "body.2.weight") is a Linear whose outputs reach the
    logits through one ReLU and the output layer."""
    index = int(name.split(".")[1])
    body = model.body
    return (index + 2 == len(body) - 1 and isinstance(body[index], nn.Linear)
            and isinstance(body[index + 1], nn.ReLU) and isinstance(body[index + 2], nn.Linear))


@torch.no_grad()
def removal_damage(x: Tensor, weight: Tensor, bias: Tensor, out: nn.Linear, y: Tensor,
                   removed: Tensor | None = None) -> Tensor:
    """[d_out, d_in]: the mean loss change on (x, y) of zeroing each weight alone of a
    Linear(`weight`, `bias`) → ReLU → `out` network (x: that Linear's inputs); inf at
    the `removed` ones (already zero), which are not computed."""
    z = x @ weight.T + bias
    a = z.clamp(min=0)
    # Classes first, so that every elementwise op runs along the contiguous inputs and
    # the sum over classes adds whole [images, inputs] planes: 1.4-2.0x faster than
    # classes last on the mlp's layer (2,500 images, alternating runs), the same damages
    # to float32 rounding (largest difference 4e-7 of the largest damage).
    p = F.softmax(out(a), dim=1).T.contiguous()
    v = out.weight
    damage = torch.full_like(weight, float("inf"))
    for j in range(weight.shape[0]):
        cols = torch.arange(weight.shape[1]) if removed is None else \
            (~removed[j]).nonzero().flatten()
        if len(cols) == 0:
            continue
        w_j = weight[j, cols]
        xs = x.index_select(1, cols)
        # Images where unit j is active, or could become so when one input is dropped:
        # everywhere else Δa_j = 0 for every weight of the row.
        could = (z[:, j] + (-xs * w_j).amax(dim=1)) > 0
        rows = ((a[:, j] > 0) | could).nonzero().flatten()
        if len(rows) == 0:
            damage[j, cols] = 0
            continue
        xs = xs.index_select(0, rows)
        da = (z[rows, j, None] - xs * w_j).clamp(min=0) - a[rows, j, None]  # [n, inputs]
        moved = torch.expm1(v[:, j, None, None] * da).mul_(p[:, rows, None])  # [classes, ...]
        change = torch.log1p(moved.sum(0)) - da * v[y[rows], j, None]
        damage[j, cols] = change.sum(0) / len(y)
    return damage


@torch.no_grad()
def weight_counts(model: Net, name: str, ratios: Sequence[float]) -> dict[str, int]:
    """Per ratio ("r4"), the weights of layer `name` its set of that ratio removes."""
    n = dict(model.named_parameters())[name].numel()
    return {f"r{r:g}": round(n * ratio_sparsity(r)) for r in ratios}


def greedy_weight_order(model: Net, data: Split, name: str, count: int,
                        block: float = BLOCK, tick: Callable[[str], None] | None = None
                        ) -> Tensor:
    """The greedy oracle's first `count` removals from layer `name`, as flat indices in
    the order removed (within a block, least damage first); each block `block` of the
    remaining weights. `tick`, if given, hears of each block done."""
    net = baked(model).float().eval()
    index = int(name.split(".")[1])
    layer, out = net.body[index], net.body[index + 2]
    assert isinstance(layer, nn.Linear) and isinstance(out, nn.Linear), name
    x = net.body[:index](data.x.float())
    weight = layer.weight.clone()
    removed = torch.zeros_like(weight, dtype=torch.bool)
    order: list[Tensor] = []
    done = 0
    while done < count:
        if tick is not None:
            tick(f"greedy weights of {name}: {done} of {count}")
        damage = removal_damage(x, weight, layer.bias, out, data.y, removed).abs()
        step = max(1, round(block * (weight.numel() - done)))
        picks = torch.argsort(damage.flatten(), stable=True)[: min(step, count - done)]
        weight.view(-1)[picks] = 0
        removed.view(-1)[picks] = True
        order.append(picks)
        done += len(picks)
    return torch.cat(order) if order else torch.empty(0, dtype=torch.long)


@torch.no_grad()
def _without(net: Net, name: str, flat: Tensor, data: Split) -> tuple[float, float]:
    layer = net.body[int(name.split(".")[1])]
    assert isinstance(layer, nn.Linear)
    kept = layer.weight.detach().clone()
    layer.weight.view(-1)[flat] = 0
    result = loss_accuracy(net(data.x.double()), data.y)
    layer.weight.copy_(kept)
    return result


def weight_set_quality(model: Net, choose: Split, score_on: Split, name: str,
                       weight_scores: dict[str, Tensor], ratios: Sequence[float],
                       block: float = BLOCK, order: Tensor | None = None
                       ) -> dict[str, dict[str, dict[str, float]]]:
    """As `unit_sets.set_quality`, for the weights of layer `name`: per criterion (and
    "greedy"), per ratio ("r4"), the scoring half's loss and accuracy with its set of
    k = n·(1 − 1/r) weights removed; per criterion the gap to greedy's and precision@k.
    `order`: the greedy's on `choose`, if already known (`truth`)."""
    net = baked(model).double().eval()
    counts = weight_counts(model, name, ratios)
    n = dict(net.named_parameters())[name].numel()
    if order is None:
        order = greedy_weight_order(model, choose, name, max(counts.values()), block)
    out: dict[str, dict[str, dict[str, float]]] = {"greedy": {}}
    for key, k in counts.items():
        loss, acc = _without(net, name, order[:k], score_on)
        out["greedy"][key] = {"loss": loss, "accuracy": acc}
    theirs = torch.zeros(n, dtype=torch.long)  # each weight's place in the greedy's order
    theirs[order] = torch.arange(1, len(order) + 1)
    for method, scores in weight_scores.items():
        ranked = torch.argsort(scores.double().flatten(), stable=True)  # once, not per ratio
        out[method] = {}
        for key, k in counts.items():
            mine = ranked[:k]
            shared = int(((theirs[mine] > 0) & (theirs[mine] <= k)).sum())
            out[method][key] = beside_greedy(*_without(net, name, mine, score_on),
                                             out["greedy"][key], shared, k)
    return out
