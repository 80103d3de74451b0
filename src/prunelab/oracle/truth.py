"""The oracle's ground truth of one baseline, computed once and kept: what no criterion
changes. The damage of removing each unit and each sampled weight alone (`oracle`), the
greedy oracle's order of unit removals (`unit_sets`) and, where supported, of weight
removals (`weight_sets`), and the split-half reliability of the single-removal damages.

It reads the baseline, the held-out images and the oracle's params, and no criterion: its
key (`keys`) is this module's code and those, so adding or editing a criterion scores it
against the truth already kept instead of measuring it again (~10 of the oracle's minutes).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save
from scipy.stats import spearmanr
from torch import Tensor, nn

from prunelab.data import Split
from prunelab.models import Net, baked, unit_groups
from prunelab.oracle.unit_sets import greedy_order, greedy_steps
from prunelab.oracle.weight_sets import greedy_weight_order, supported, weight_counts

SAMPLE_SEED_OFFSET = 1_000_003


def loss_of(logits: Tensor, y: Tensor) -> float:
    return float(F.cross_entropy(logits, y))


@torch.no_grad()
def unit_damage(model: Net, data: Split) -> list[Tensor]:
    """Per hidden layer, per unit: mean loss with that unit removed minus the loss."""
    net = baked(model).double().eval()
    x, y = data.x.double(), data.y
    base = loss_of(net(x), y)
    out = []
    for g in unit_groups(net):
        acts = net.body[: g.activation + 1](x)
        tail = net.body[g.activation + 1:]
        damage = torch.empty(acts.shape[1], dtype=torch.float64)
        for k in range(acts.shape[1]):
            cut = acts.clone()
            cut[:, k] = 0
            damage[k] = loss_of(tail(cut), y) - base
        out.append(damage)
    return out


@torch.no_grad()
def weight_damage(model: Net, data: Split, names: list[str], per_layer: int,
                  seed: int) -> dict[str, tuple[Tensor, Tensor]]:
    """Per layer in `names`: (flat indices of `per_layer` weights sampled uniformly, the
    mean loss with that weight alone zeroed minus the loss)."""
    net = baked(model).double().eval()
    x, y = data.x.double(), data.y
    base = loss_of(net(x), y)
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
            part = apply_row(layer, inputs, only[o:o + 1])
            cut = z.clone()
            cut[:, o] -= part[:, 0]
            damage[i] = loss_of(tail(cut), y) - base
        out[name] = (picks, damage)
    return out


def apply_row(layer: nn.Module, inputs: Tensor, weight: Tensor) -> Tensor:
    """The layer's map with `weight` (one output unit's row or filter) and no bias."""
    if isinstance(layer, nn.Conv2d):
        return F.conv2d(inputs, weight, stride=layer.stride, padding=layer.padding)
    return F.linear(inputs, weight)



@dataclass
class Truth:
    units: list[Tensor]  # per hidden layer, each unit's damage on the held-out images
    weights: dict[str, tuple[Tensor, Tensor]]  # per pruned layer: (sampled indices, damages)
    unit_order: list[tuple[int, int]]  # the greedy's removals on the choosing half
    weight_order: dict[str, Tensor]  # the one supported pruned layer's, else empty
    reliability: dict[str, float]  # per hidden layer: ρ between the two halves' damages


def halves(held: Split) -> tuple[Split, Split]:
    """(the half the greedy chooses on, the half every set is scored on)."""
    half = len(held) // 2
    return held.take(half), Split(held.x[half:], held.y[half:])


def measure(model: Net, held: Split, weight_names: list[str], per_layer: int, seed: int,
            ratios: Sequence[float], tick: Callable[[str], None] | None = None) -> Truth:
    """The whole truth of `model` on `held` (see the module's docstring). `tick`, if
    given, hears where it is (each part, each greedy step): the stage's progress line."""
    say = tick or (lambda _: None)
    choose, score_on = halves(held)
    say("single-unit damage, twice (its reliability)")
    reliability = {f"layer{i}": float(spearmanr(a.numpy(), b.numpy()).statistic)
                   for i, (a, b) in enumerate(zip(unit_damage(model, choose),
                                                  unit_damage(model, score_on), strict=True))}
    weight_order = {}
    if len(weight_names) == 1 and supported(model, name := weight_names[0]):
        count = max(weight_counts(model, name, ratios).values())
        weight_order[name] = greedy_weight_order(model, choose, name, count, tick=tick)
    say("single-unit damage")
    units = unit_damage(model, held)
    say("single-weight damage")
    weights = weight_damage(model, held, weight_names, per_layer, seed)
    return Truth(units, weights, greedy_order(model, choose, greedy_steps(model, ratios), tick),
                 weight_order, reliability)


def to_bytes(t: Truth) -> bytes:
    """The truth as a safetensors file whose bytes are a function of the truth alone: a
    DVC output (models/truth), so a rerun that measures the same truth must write the same
    file. Hence no measuring time in it (`prunelab oracle` logs that to MLflow), and one
    metadata entry: safetensors keeps metadata in a Rust HashMap, whose order (and so the
    header's bytes) changes from one process to the next when there are several."""
    tensors = {f"units.{i}": u for i, u in enumerate(t.units)}
    for name, (picks, damage) in t.weights.items():
        tensors[f"picks.{name}"], tensors[f"damage.{name}"] = picks, damage
    tensors["unit_order"] = torch.tensor(t.unit_order, dtype=torch.long).reshape(-1, 2)
    tensors |= {f"weight_order.{n}": o for n, o in t.weight_order.items()}
    about = {"reliability": t.reliability, "weights": list(t.weights)}
    return save({k: v.contiguous() for k, v in tensors.items()},
                metadata={"truth": json.dumps(about, sort_keys=True)})


def load(path: Path) -> Truth:
    tensors = load_file(str(path))
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    about = json.loads(meta["truth"])
    units = [tensors[f"units.{i}"] for i in range(sum(k.startswith("units.") for k in tensors))]
    weights = {n: (tensors[f"picks.{n}"], tensors[f"damage.{n}"])
               for n in about["weights"]}
    order = [(int(a), int(b)) for a, b in tensors["unit_order"].tolist()]
    weight_order = {k.removeprefix("weight_order."): v for k, v in tensors.items()
                    if k.startswith("weight_order.")}
    return Truth(units, weights, order, weight_order, about["reliability"])
