"""How good is a criterion's *set*? Removing many units at once is not the sum of removing
each alone (issue 23): a criterion is judged here by the loss its whole bottom-k set leaves,
against the best set a greedy oracle finds.

The greedy oracle removes, one at a time, the hidden unit (of any layer) whose removal,
given those already removed, raises the held-out loss least, re-evaluating every remaining
unit at each step; its first k removals are its set of k. It chooses on one half of the
held-out images and every set — the criteria's and its own — is scored on the other half,
so its sets are not flattered by the images that chose them. Removing a unit zeroes its
post-ReLU activation (as `truth.unit_damage`); nothing is fine-tuned.

For a criterion and each sweep ratio r: its set is the bottom n_l·(1 − 1/r) units of
every hidden layer l (the sweep's `neuron_scope: layer`), the greedy set the greedy
oracle's first k of any layers, k the same total. Reported: the scoring half's loss and
accuracy after removing each set, the criterion's gap to the greedy set, and precision@k
(the share of its set the greedy set also holds).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from prunelab.data import Split
from prunelab.models import Net, UnitGroup, baked, unit_groups
from prunelab.ratios import ratio_sparsity

Removed = list[set[int]]  # per hidden layer (`unit_groups` order), the units removed


def _through(net: Net, h: Tensor, start: int, groups: list[UnitGroup],
             removed: Removed) -> Tensor:
    """From `net.body[start]` on, `h` through `groups` (their removals applied) to the
    output."""
    for g, gone in zip(groups, removed, strict=True):
        h = net.body[start: g.activation + 1](h)
        if gone:
            h = h.clone()
            h[:, sorted(gone)] = 0
        start = g.activation + 1
    out: Tensor = net.body[start:](h)
    return out


def loss_accuracy(logits: Tensor, y: Tensor) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of `logits` against the labels `y`."""
    return float(F.cross_entropy(logits, y)), float((logits.argmax(1) == y).double().mean())


def set_loss(net: Net, data: Split, removed: Removed) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) on `data` with `removed` cut."""
    with torch.no_grad():
        return loss_accuracy(_through(net, data.x.double(), 0, unit_groups(net), removed),
                             data.y)


def beside_greedy(loss: float, accuracy: float, greedy: dict[str, float], shared: int,
                  k: int) -> dict[str, float]:
    """A criterion's set of k scored (`loss`, `accuracy`) beside the greedy's of the same
    size: the gaps (loss, and accuracy in pp) and precision@k (`shared` of its k)."""
    return {"loss": loss, "accuracy": accuracy, "loss_gap": loss - greedy["loss"],
            "accuracy_gap_pp": 100 * (greedy["accuracy"] - accuracy),
            "precision_at_k": shared / max(k, 1)}


@torch.no_grad()
def greedy_order(model: Net, data: Split, steps: int,
                 tick: Callable[[str], None] | None = None) -> list[tuple[int, int]]:
    """The greedy oracle's first `steps` removals, as (layer, unit), on `data`. Each
    step evaluates every remaining unit: the activations up to a layer are computed once
    per step with the earlier layers' removals applied, then each candidate costs the rest
    of the network — from the next layer's output where that layer is a Linear right after
    the activation (removing unit k subtracts h_k·W[:, k] from it: a rank-one change, not a
    pass of the layer; LeNet-300-100's 300 → 100 layer for each of 300 candidates).
    `tick`, if given, hears of each step done (the stage's progress line)."""
    net = baked(model).double().eval()
    x, y = data.x.double(), data.y
    groups = unit_groups(net)
    removed: Removed = [set() for _ in groups]
    order: list[tuple[int, int]] = []
    for step in range(steps):
        if tick is not None:
            tick(f"greedy unit step {step} of {steps}")
        best: tuple[float, int, int] | None = None
        h, start = x, 0
        for li, g in enumerate(groups):
            h = net.body[start: g.activation + 1](h)
            if removed[li]:
                h = h.clone()
                h[:, sorted(removed[li])] = 0
            start = g.activation + 1
            after = _rest(net, groups, li, h, removed)
            for k in range(h.shape[1]):
                # Leave a layer at least one unit: an emptied layer is no network.
                if k in removed[li] or len(removed[li]) + 1 >= h.shape[1]:
                    continue
                loss = float(F.cross_entropy(after(k), y))
                if best is None or loss < best[0]:
                    best = (loss, li, k)
        if best is None:
            break
        removed[best[1]].add(best[2])
        order.append((best[1], best[2]))
    return order


def _rest(net: Net, groups: list[UnitGroup], li: int, h: Tensor,
          removed: Removed) -> Callable[[int], Tensor]:
    """k -> the output with unit k of layer `li` (activations `h`) removed as well."""
    g = groups[li]
    consumer = net.body[g.activation + 1]
    if isinstance(consumer, nn.Linear) and g.span == 1:
        z = consumer(h)
        later = groups[li + 1:]

        def rank_one(k: int) -> Tensor:
            return _through(net, z - h[:, k, None] * consumer.weight[:, k],
                            g.activation + 2, later, removed[li + 1:])
        return rank_one

    def full(k: int) -> Tensor:
        cut = h.clone()
        cut[:, k] = 0
        return _through(net, cut, g.activation + 1, groups[li + 1:], removed[li + 1:])
    return full


def bottom_k(scores: list[Tensor], counts: list[int]) -> Removed:
    """A criterion's set: in each layer, its `counts[layer]` lowest-scored units (ties by
    index) — the same fraction of every layer, as the sweep cuts (`neuron_scope: layer`)."""
    return [set(torch.argsort(s.double().flatten(), stable=True)[:c].tolist())
            for s, c in zip(scores, counts, strict=True)]


def as_sets(order: list[tuple[int, int]], k: int, layers: int) -> Removed:
    out: Removed = [set() for _ in range(layers)]
    for li, u in order[:k]:
        out[li].add(u)
    return out


def unit_counts(model: Net, ratios: Sequence[float]) -> dict[str, list[int]]:
    """Per ratio ("r4"), the units each hidden layer's set of that ratio removes."""
    modules = dict(model.named_modules())
    sizes = [modules[g.producer].weight.shape[0] for g in unit_groups(model)]
    return {f"r{r:g}": [min(round(n * ratio_sparsity(r)), n - 1) for n in sizes]
            for r in ratios}


def greedy_steps(model: Net, ratios: Sequence[float]) -> int:
    """How many removals of the greedy order the largest ratio's set needs."""
    return max(sum(c) for c in unit_counts(model, ratios).values())


def set_quality(model: Net, choose: Split, score_on: Split, unit_scores: dict[str, list[Tensor]],
                ratios: Sequence[float], order: list[tuple[int, int]] | None = None
                ) -> dict[str, dict[str, dict[str, float]]]:
    """Per criterion (and "greedy"), per ratio ("r4"): the scoring half's loss and accuracy
    with its set of k removed; per criterion also the gap to greedy's (loss, and accuracy
    in pp) and precision@k against greedy's set. `order`: the greedy's on `choose`, if
    already known (`truth`)."""
    net = baked(model).double().eval()
    counts = unit_counts(model, ratios)
    sizes = [len(c) for c in next(iter(unit_scores.values()))]
    assert len(sizes) == len(next(iter(counts.values()))), "one score vector per hidden layer"
    if order is None:
        order = greedy_order(model, choose, greedy_steps(model, ratios))
    greedy_sets = {name: as_sets(order, sum(c), len(sizes)) for name, c in counts.items()}
    out: dict[str, dict[str, dict[str, float]]] = {"greedy": {}}
    for name, theirs in greedy_sets.items():
        loss, acc = set_loss(net, score_on, theirs)
        out["greedy"][name] = {"loss": loss, "accuracy": acc}
    for method, scores in unit_scores.items():
        out[method] = {}
        for name, c in counts.items():
            mine = bottom_k(scores, c)
            shared = sum(len(a & b) for a, b in zip(mine, greedy_sets[name], strict=True))
            out[method][name] = beside_greedy(*set_loss(net, score_on, mine),
                                              out["greedy"][name], shared, sum(c))
    return out
