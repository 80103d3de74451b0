"""WoodFisher: Optimal Brain Surgeon with the empirical Fisher of the loss as its Hessian,
so that, unlike `obs` (whose Hessian 2XXᵀ is the layer's *inputs*), it reads the loss
gradient (Singh & Alistarh 2020, "WoodFisher"; M-FAC, Frantar et al. 2021; oBERT,
Kurtic et al. 2022).

The loss near the trained weights w is the quadratic ½ δᵀ F δ of a change δ, with F the
dampened empirical Fisher of N per-example gradients gᵢ = ∇ℓᵢ(w) on calibration images
(the *training* split):

    F = 1/N Σᵢ gᵢ gᵢᵀ + λ·d̄·I,   d̄ the layer's mean diagonal of the first term.

Removing weight q costs, with the update that makes up for it best (Hassibi & Stork 1993,
Eq. 5; WoodFisher's pruning statistic),

    ρ_q = w_q² / (2 [F⁻¹]_qq),     δw = −w_q F⁻¹ e_q / [F⁻¹]_qq,

and a set Q removed at once (oBERT's group form; not a sum of single-weight updates)

    δw = −F⁻¹[:, Q] ([F⁻¹]_QQ)⁻¹ w_Q,   cost ½ w_Qᵀ ([F⁻¹]_QQ)⁻¹ w_Q,

after which the inverse of the Fisher over what is left is the Schur complement
F⁻¹ − F⁻¹[:, Q] ([F⁻¹]_QQ)⁻¹ F⁻¹[Q, :] (`remove`).

Blocks: F is block-diagonal (WoodFisher's rule for layers too large for one inverse): each
row of a layer (an output's weights) is cut into ⌈d / `block`⌉ chunks of consecutive
columns, of at most `block` (128) weights each; a block's F is B×B and inverted directly
in float64 (the Woodbury recursion of the paper gives the same inverse, ~N/B times slower
here). The N = `examples` (1,024, M-FAC's m) per-example gradients come from torch.func.

Weights, one-shot in steps: each step removes the lowest-ρ half of what is left of each
layer (the same fraction of every layer, as `obs`), each block's share Q at once with the
group update above, then recomputes ρ from the updated weights and inverse; 10 steps
reach 1/1024 of the weights, an 11th removes the rest. A target of 2^k× therefore lands
on the end of a step; between steps the lowest ρ of the next one go first. A weight's
score is its step, plus its rank within the step (higher: kept longer). F is estimated
once, at the trained weights (oBERT's and M-FAC's one-shot); WoodFisher's variant that
re-estimates it between steps is not what this does. The cut model's kept weights then
get the group update for everything removed, from the trained weights (`refit_weights`):
for a fixed F that equals the steps' updates replayed (`tests/test_woodfisher.py`).

Neurons (structured, oBERT's group OBS): removing hidden unit j removes its outgoing
weights, the group G of the consumer's columns unit j owns (one per row; `span` where a
map is flattened, kh·kw for a conv), so F is that of the consumer's weights, with its row
chunks aligned to whole units. Unit j costs Σ_rows ½ w_Gᵀ ([F⁻¹]_GG)⁻¹ w_G; the trace
removes the cheapest unit, updates every row's chunk holding it, and repeats; a unit's
score is the trace's total cost when it goes (as `obs`). The smaller model's consumer gets
the group update of the removed units' columns (`refit_units`); the unit's incoming row
and bias go by the surgery every neuron method shares.

Damping λ: `criteria.woodfisher.damping`, relative to the layer's mean Fisher diagonal
(the trained model's per-example gradients are small, so an absolute λ would dominate F
unnoticed). Chosen on validation (`scripts/woodfisher_damping.py`; BENCHMARKS.md,
"WoodFisher's damping"): λ = 100 was the best of 1e-4 … 100 after fine-tuning at both
granularities. There F⁻¹ ≈ (I − F₀/λd̄)/λd̄: ρ is w² with a per-cent correction by the
Fisher's diagonal and the updates are small, so woodfisher as chosen is close to
magnitude within each layer (λ → ∞), which validation put level with it; with the
Fisher counting fully (λ = 0.01) it is ahead before fine-tuning at 8× and behind after.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from prunelab.criteria.base import Criterion
from prunelab.criteria.registry import Registration, register
from prunelab.criteria.scoring import Batches, Scores, UnitScores
from prunelab.models import Net, UnitGroup, unit_groups, weighted_layers

STEPS = 10  # halvings of each layer's weights; an 11th step removes what is left


@dataclass(frozen=True)
class WoodfisherSettings:
    damping: float = 100.0  # λ, relative to the layer's mean diagonal of F (validation's)
    block: int = 128       # at most this many consecutive weights of a row per block of F
    examples: int = 1024   # per-example gradients the Fisher is estimated from


# The block Fishers and weight traces by content of (weights, calibration images,
# settings): a sweep's points of one seed at every ratio share them, and the refit reuses
# the scoring's Fisher. Each a pure function of its key, so a cache cannot change a result.
_FISHERS: dict[str, dict[str, Blocks]] = {}
_TRACES: dict[str, Scores] = {}
T = TypeVar("T")


@dataclass(frozen=True)
class Blocks:
    """A layer's Fisher, block-diagonal: `fisher[r, k]` is the (width × width) block of
    row r's chunk k, whose columns are `width·k …` of the row padded to `chunks·width`
    (the padding's columns are not weights: `real` is False there)."""

    fisher: Tensor  # (rows, chunks, width, width), float64, damped
    width: int
    real: Tensor    # (chunks, width) bool

    @property
    def columns(self) -> int:
        return int(self.real.sum())


def chunking(d: int, unit: int, block: int) -> tuple[int, int]:
    """(chunks, width) for a row of `d` columns in units of `unit` consecutive columns:
    ⌈d / block⌉ chunks of whole units, as equal as they can be (the last may be short)."""
    units = d // unit
    chunks = max(1, math.ceil(d / block))
    per_chunk = math.ceil(units / chunks)
    return math.ceil(units / per_chunk), per_chunk * unit


def per_example_gradients(model: Net, batches: Batches,
                          examples: int) -> Iterator[dict[str, Tensor]]:
    """Per batch, until `examples` are seen: each weighted layer's per-example gradients
    of the cross-entropy, (n, rows, columns) as the layer's weight flattened by row,
    keyed by its prefix ("body.<i>")."""
    prefixes = [prefix for prefix, _ in weighted_layers(model)]
    params = {k: v.detach() for k, v in model.named_parameters()}
    weights = {f"{p}.weight": params[f"{p}.weight"] for p in prefixes}
    model.eval()

    def loss(w: dict[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
        out = functional_call(model, {**params, **w}, (x[None],))
        return F.cross_entropy(out, y[None])

    each = vmap(grad(loss), in_dims=(None, 0, 0))
    seen = 0
    for x, y in batches:
        if seen >= examples:
            break
        x, y = x[: examples - seen], y[: examples - seen]
        seen += len(x)
        g = each(weights, x, y)
        yield {p: g[f"{p}.weight"].detach().flatten(2) for p in prefixes}


class _FisherSum:
    """One layer's Σ g gᵀ per block, summed over batches of per-example gradients."""

    def __init__(self, unit: int, block: int) -> None:
        self.unit, self.block = unit, block
        self.total: Tensor | None = None
        self.n = self.d = self.chunks = self.width = 0

    def add(self, g: Tensor) -> None:
        """A batch of per-example gradients, (n, rows, d)."""
        rows, self.d = g.shape[1:]
        self.chunks, self.width = chunking(self.d, self.unit, self.block)
        padded = F.pad(g, (0, self.chunks * self.width - self.d))
        padded = padded.view(len(g), rows, self.chunks, self.width)
        # Each batch in float32 (4x faster), summed in float64, as `obs`'s Hessians.
        outer = torch.einsum("nrkb,nrkc->rkbc", padded, padded).double()
        self.total = outer if self.total is None else self.total + outer
        self.n += len(g)

    def damped(self, damping: float) -> Blocks:
        """F = 1/N Σ g gᵀ + λ·d̄·I per block (module doc)."""
        assert self.total is not None, "woodfisher needs at least one calibration batch"
        real = (torch.arange(self.chunks * self.width) < self.d).view(self.chunks, self.width)
        fisher = self.total / self.n
        mean = float(fisher.diagonal(dim1=-2, dim2=-1)[..., real].mean()) or 1.0
        fisher = fisher + damping * mean * torch.eye(self.width, dtype=fisher.dtype)
        return Blocks(fisher, self.width, real)


def _key(model: Net, batches: Batches, s: WoodfisherSettings, what: object) -> str:
    """A digest of what a Fisher (and a trace from it) is a function of."""
    h = hashlib.sha1(repr((s, what)).encode())
    for _, m in weighted_layers(model):
        h.update(m.weight.detach().cpu().numpy().tobytes())
    for x, _ in batches[: math.ceil(s.examples / max(1, len(batches[0][0])))]:
        h.update(x.cpu().numpy().tobytes())
    return h.hexdigest()


def _cached(cache: dict[str, T], key: str, make: Callable[[], T]) -> T:
    if key not in cache:
        if len(cache) >= 8:
            cache.pop(next(iter(cache)))
        cache[key] = make()
    return cache[key]


def layer_fishers(model: Net, batches: Batches, s: WoodfisherSettings,
                  units: dict[str, int]) -> dict[str, Blocks]:
    """The block Fisher of each layer in `units` (prefix -> its unit of columns), cached."""

    def make() -> dict[str, Blocks]:
        sums = {p: _FisherSum(u, s.block) for p, u in units.items()}
        for batch in per_example_gradients(model, batches, s.examples):
            for p, acc in sums.items():
                acc.add(batch[p])
        return {p: acc.damped(s.damping) for p, acc in sums.items()}

    return _cached(_FISHERS, _key(model, batches, s, sorted(units.items())), make)


def blocked(w: Tensor, b: Blocks) -> Tensor:
    """A layer's weight (rows × d) as (rows, chunks, width), zero-padded, float64."""
    chunks = b.real.shape[0]
    flat = w.detach().flatten(1).cpu().double()
    return F.pad(flat, (0, chunks * b.width - flat.shape[1])).view(len(flat), chunks, b.width)


def unblocked(w: Tensor, b: Blocks) -> Tensor:
    """`blocked`'s inverse: (rows, chunks, width) -> (rows, d)."""
    return w.flatten(1)[:, : b.columns]


def remove(w: Tensor, f_inv: Tensor, q: Tensor) -> tuple[Tensor, Tensor]:
    """OBS's group removal in every block at once: w (…, B), F⁻¹ (…, B, B), q (…, B) bool,
    the set Q of each block. δw = −F⁻¹[:, Q] ([F⁻¹]_QQ)⁻¹ w_Q, and F⁻¹ becomes the Schur
    complement F⁻¹ − F⁻¹[:, Q] ([F⁻¹]_QQ)⁻¹ F⁻¹[Q, :] (the inverse over what is left, 0 on
    Q). A block with no Q is left as it is."""
    qf = q.to(w.dtype)
    both = qf[..., :, None] * qf[..., None, :]
    # [F⁻¹]_QQ inside an identity, so every block inverts whatever the size of its Q.
    a = f_inv * both + torch.diag_embed(1 - qf)
    inv_qq = torch.linalg.inv(a) * both
    cols = f_inv * qf[..., None, :]  # F⁻¹[:, Q], 0 elsewhere
    w = w - (cols @ (inv_qq @ (w * qf)[..., None]))[..., 0]
    f_inv = f_inv - cols @ inv_qq @ cols.transpose(-1, -2)
    return w.masked_fill(q, 0.0), f_inv


def weight_trace(w: Tensor, b: Blocks) -> Tensor:
    """The steps of the module's doc on one layer: each weight's score, (rows, d)."""
    wb = blocked(w, b)
    f_inv = torch.linalg.inv(b.fisher)
    gone = (~b.real).expand_as(wb).clone()
    score = torch.zeros_like(wb)
    n = int((~gone).sum())
    for step in range(STEPS + 1):
        left = int((~gone).sum())
        target = n >> (step + 1) if step < STEPS else 0
        if left == 0:
            break
        rho = (wb.pow(2) / (2 * f_inv.diagonal(dim1=-2, dim2=-1))).masked_fill(gone, math.inf)
        order = rho.flatten().argsort(stable=True)[: left - target]
        q = torch.zeros(wb.numel(), dtype=torch.bool)
        q[order] = True
        rank = torch.zeros(wb.numel(), dtype=wb.dtype)
        rank[order] = torch.arange(1, len(order) + 1, dtype=wb.dtype) / (len(order) + 1)
        q = q.view_as(wb)
        score = torch.where(q, step + rank.view_as(wb), score)
        wb, f_inv = remove(wb, f_inv, q)
        gone |= q
    return unblocked(score, b)


def weight_scores(model: Net, batches: Batches, s: WoodfisherSettings) -> Scores:
    """Per weight, the step that removes it (module doc); lower is cut first."""
    layers = weighted_layers(model)

    def make() -> Scores:
        fishers = layer_fishers(model, batches, s, {p: 1 for p, _ in layers})
        return {p: weight_trace(m.weight, fishers[p]).float().view(m.weight.shape)
                for p, m in layers}

    traces = _cached(_TRACES, _key(model, batches, s, "weight trace"), make)
    return {f"{p}.weight": traces[p].to(m.weight.device, copy=True) for p, m in layers}


def clear_caches() -> None:
    """Forget every Fisher and trace (a benchmark's cold start)."""
    _FISHERS.clear()
    _TRACES.clear()


def refit_weights(dense: Net, cut: Net, kept: dict[str, Tensor], batches: Batches,
                  s: WoodfisherSettings) -> None:
    """The group update for everything each masked layer lost, from the trained weights
    and their Fisher (torch.nn.utils.prune keeps the cut ones at 0)."""
    layers = weighted_layers(dense)
    fishers = layer_fishers(dense, batches, s, {p: 1 for p, _ in layers})
    dense_modules, cut_modules = dict(dense.named_modules()), dict(cut.named_modules())
    with torch.no_grad():
        for name, mask in kept.items():
            prefix = name.rsplit(".", 1)[0]
            b = fishers[prefix]
            w = blocked(dense_modules[prefix].weight, b)
            q = blocked(~mask.bool(), b).bool() & b.real
            new, _ = remove(w, torch.linalg.inv(b.fisher), q)
            orig = cut_modules[prefix].weight_orig
            orig.copy_(unblocked(new, b).view(orig.shape).to(orig))


def _unit_columns(consumer: nn.Module, span: int) -> int:
    """How many of the consumer's input columns one unit owns (one row's group G)."""
    if isinstance(consumer, nn.Conv2d):
        return int(consumer.kernel_size[0] * consumer.kernel_size[1])
    return span


def _consumers(model: Net) -> dict[str, int]:
    modules = dict(model.named_modules())
    return {g.consumer: _unit_columns(modules[g.consumer], g.span) for g in unit_groups(model)}


def unit_columns(units: int, unit: int, b: Blocks) -> Tensor:
    """(units, unit): each unit's columns in the padded row (chunk·width + offset)."""
    per_chunk = b.width // unit
    j = torch.arange(units)
    start = (j // per_chunk) * b.width + (j % per_chunk) * unit
    return start[:, None] + torch.arange(unit)


def unit_trace(w: Tensor, b: Blocks, unit: int) -> tuple[Tensor, Tensor]:
    """Structured OBS's greedy trace over the units of a consumer `w` (rows × d): (order,
    cost) as `second_order.unit_trace`, float64; F block-diagonal by row chunk."""
    wb = blocked(w, b)
    rows, chunks, width = wb.shape
    f_inv = torch.linalg.inv(b.fisher)
    units = w.flatten(1).shape[1] // unit
    cols = unit_columns(units, unit, b)
    chunk, local = cols[:, 0] // width, cols % width
    left = list(range(units))
    order, cost = [], []
    for _ in range(units):
        live = torch.tensor(left)
        k, g = chunk[live], local[live]  # (u,), (u, unit)
        sub = f_inv[:, k[:, None, None], g[:, :, None], g[:, None, :]]  # [F⁻¹]_GG per row
        wg = wb[:, k[:, None], g]  # (rows, u, unit)
        costs = 0.5 * (wg[..., None, :] @ torch.linalg.solve(sub, wg[..., None])).sum(
            (0, 2, 3))
        best = int(costs.argmin())
        q = torch.zeros(rows, chunks, width, dtype=torch.bool)
        q[:, int(k[best]), g[best]] = True
        wb, f_inv = remove(wb, f_inv, q)
        order.append(left.pop(best))
        cost.append(float(costs[best]))
    return torch.tensor(order), torch.tensor(cost, dtype=torch.float64)


def unit_scores(model: Net, batches: Batches, s: WoodfisherSettings) -> UnitScores:
    """Per hidden unit, the trace's total cost when it removes that unit (module doc)."""
    units = _consumers(model)
    fishers = layer_fishers(model, batches, s, units)
    modules = dict(model.named_modules())
    out = []
    for g in unit_groups(model):
        consumer = modules[g.consumer]
        order, cost = unit_trace(consumer.weight, fishers[g.consumer], units[g.consumer])
        scores = torch.empty(len(order), dtype=torch.float64)
        scores[order] = cost.cumsum(0)
        out.append(scores.float().to(consumer.weight.device))
    return out


def _weight(model: Net, layer: str) -> Tensor:
    w = model.get_submodule(layer).weight
    assert isinstance(w, Tensor)
    return w


def consumer_cuts(model: Net, kept: dict[str, Tensor]) -> Iterator[tuple[UnitGroup, Tensor,
                                                                         Tensor]]:
    """Per cut hidden layer: its group, its keep-vector, and which of its consumer's rows
    the smaller model has (all of them, unless the consumer is itself cut)."""
    groups = unit_groups(model)
    keeps = [kept[f"units.{i}"].bool().cpu() for i in range(len(groups))]
    cut_rows = {g.producer: k for g, k in zip(groups, keeps, strict=True)}
    for g, keep in zip(groups, keeps, strict=True):
        rows = _weight(model, g.consumer).shape[0]
        yield g, keep, cut_rows.get(g.consumer, torch.ones(rows, dtype=torch.bool))


def refit_units(dense: Net, small: Net, kept: dict[str, Tensor], batches: Batches,
                s: WoodfisherSettings) -> None:
    """Each cut layer's consumer in the smaller model: the dense consumer after the group
    update of the removed units' columns, its kept columns and rows."""
    units = _consumers(dense)
    fishers = layer_fishers(dense, batches, s, units)
    with torch.no_grad():
        for g, keep, rows in consumer_cuts(dense, kept):
            b = fishers[g.consumer]
            cols = keep.repeat_interleave(units[g.consumer])
            w = blocked(_weight(dense, g.consumer), b)
            q = blocked(~cols.expand(len(w), -1), b).bool() & b.real
            new = unblocked(remove(w, torch.linalg.inv(b.fisher), q)[0], b)[rows][:, cols]
            target = _weight(small, g.consumer)
            target.copy_(new.view(target.shape).to(target))


def _weights(c: WoodfisherSettings, _seed: int) -> Criterion[Scores]:
    return Criterion(lambda m, b: weight_scores(m, b, c),
                     lambda d, cut, k, b: refit_weights(d, cut, k, b, c), scope="layer")


def _neurons(c: WoodfisherSettings, _seed: int) -> Criterion[UnitScores]:
    return Criterion(lambda m, b: unit_scores(m, b, c),
                     lambda d, small, k, b: refit_units(d, small, k, b, c), scope="layer")


register(Registration(
    "woodfisher", "loss gradient", "surgeon", _weights, _neurons, WoodfisherSettings,
    cite="ρ_q = w_q²/(2[F⁻¹]_qq), δw = −F⁻¹[:, Q]([F⁻¹]_QQ)⁻¹w_Q, F the empirical Fisher "
         "1/N Σ∇ℓᵢ∇ℓᵢᵀ + λI (Singh & Alistarh 2020; Hassibi & Stork 1993, Eq. 5; "
         "Kurtic et al. 2022's group form)"))
