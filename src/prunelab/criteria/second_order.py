"""Optimal Brain Surgeon, layer-wise: choose what to remove by the second-order cost of
removing it, then update what is left to make up for it.

A layer's output Y = W X is kept close on calibration inputs X (rows: examples, and for a
conv every position of its unfolded patches; from the *training* split): the error of
changed weights is E = ½ δ H δᵀ per row, H = 2/N Σ x xᵀ (Dong et al. 2017, "L-OBS";
Frantar & Alistarh 2022, "OBC"). Removing weight q of a row costs (Hassibi & Stork 1993)

    δE_q = ½ · w_q² / [H⁻¹]_qq,   with the update   δ = −(w_q / [H⁻¹]_qq) · H⁻¹[:, q],

and OBC's greedy procedure removes a row's cheapest weight, updates the row and H⁻¹
(H⁻¹ ← H⁻¹ − H⁻¹[:, q] H⁻¹[q, :] / [H⁻¹]_qq), and repeats. Each step is exact for the
quadratic, so after removing a set Q the row equals the least-squares refit on the rest,
w'_R = w_R + H_RR⁻¹ H_RQ w_Q, which is how `refit` computes it (one solve per row instead
of replaying the trace; `tests/test_obs.py` checks the two agree).

Which weights: OBC's rule. Each row's full greedy trace records the cost of each step;
a layer cut by k removes the k cheapest steps over all its rows, i.e. each row's first c
trace steps, c its number of steps among the layer's k cheapest. The score here gives that
cut to `masks.select`: the weight removed at step t of a row scores the row's t-th
smallest step cost. Across layers: the same fraction of every layer (OBC's uniform
allocation; L-OBS sets per-layer fractions by hand), so `scope` is "layer".

Neurons (structured OBS): removing hidden unit j removes the consumer's input columns J
(one per unit, `span` where a 4×4 map is flattened, kh·kw for a conv consumer); with H
over the consumer's inputs its cost is ½ tr(W[:, J] [H⁻¹]_JJ⁻¹ W[:, J]ᵀ) (½·‖W[:, j]‖² /
[H⁻¹]_jj for one column), removed greedily with the same update. A unit's score is the
total cost when the trace removes it, so a layer's lowest k are the trace's first k;
`refit_units` gives the smaller model's consumer its least-squares refit W H[:, K] H_KK⁻¹.

Damping: H + λI with λ = 1 % of H's mean diagonal (OBC's and SparseGPT's default), as
MNIST's border pixels are 0 in every image and H is singular without it.
"""

from __future__ import annotations

import hashlib

import torch
from torch import Tensor, nn

from prunelab.criteria.base import Criterion
from prunelab.criteria.registry import Registration, register
from prunelab.criteria.scoring import Batches, Scores, UnitScores, input_rows
from prunelab.models import Net, unit_groups, weighted_layers

DAMPING = 0.01

# Traces by content of (W, H⁻¹): the sweep's points of one seed at every ratio, and obs
# beside obs-noupdate, share one trace (11 s for the mlp's 128×784 layer on one thread).
# A trace is a pure function of its key, so the cache cannot change a result.
_TRACES: dict[str, tuple[Tensor, Tensor]] = {}


def layer_hessians(model: Net, batches: Batches) -> dict[str, Tensor]:
    """Per weighted layer ("body.<i>"), H = 2/N Σ x xᵀ over its calibration inputs, damped,
    in float64."""
    sums: dict[str, Tensor] = {}
    n: dict[str, int] = {}
    for batch in input_rows(model, batches):
        for k, rows in batch.items():
            gram = (rows.T @ rows).double()  # a batch in float32 (4× faster), sums in float64
            sums[k] = sums[k] + gram if k in sums else gram
            n[k] = n.get(k, 0) + len(rows)
    return {k: damped(2 * s / n[k]) for k, s in sums.items()}


def damped(h: Tensor) -> Tensor:
    return h + DAMPING * float(h.diagonal().mean()) * torch.eye(len(h), dtype=h.dtype)


def greedy_traces(w: Tensor, h_inv: Tensor) -> tuple[Tensor, Tensor]:
    """OBC's greedy trace of every row of `w` (rows × d) at once, all d steps: (order, cost),
    order[i, t] the column row i removes at step t, cost[i, t] its ½ w_q²/[H⁻¹]_qq then.
    Every 16 steps the removed columns are dropped from each row's H⁻¹, so the work is
    ~d³/3 per row instead of d³."""
    r, d = w.shape
    w = w.clone()
    hi = h_inv.expand(r, d, d).clone()
    idx = torch.arange(d).expand(r, d).clone()
    gone = torch.zeros(r, d, dtype=torch.bool)
    order = torch.empty(r, d, dtype=torch.long)
    cost = torch.empty(r, d, dtype=w.dtype)
    rows = torch.arange(r)
    for t in range(d):
        diag = hi.diagonal(dim1=1, dim2=2)
        s = (w.pow(2) / diag).masked_fill_(gone, float("inf"))
        q = s.argmin(1)
        order[:, t], cost[:, t] = idx[rows, q], 0.5 * s[rows, q]
        hqq, col = diag[rows, q], hi[rows, :, q]
        w -= (w[rows, q] / hqq)[:, None] * col
        hi.baddbmm_(col[:, :, None], (col / hqq[:, None])[:, None, :], alpha=-1)
        gone[rows, q] = True
        if (t + 1) % 16 == 0 and t + 1 < d:
            keep = (~gone).nonzero()[:, 1].view(r, -1)
            m = keep.shape[1]
            idx, w = idx.gather(1, keep), w.gather(1, keep)
            hi = hi.gather(1, keep[:, :, None].expand(r, m, hi.shape[2]))
            hi = hi.gather(2, keep[:, None, :].expand(r, m, m))
            gone = torch.zeros(r, m, dtype=torch.bool)
    return order, cost


def trace_scores(order: Tensor, cost: Tensor) -> Tensor:
    """Scores whose lowest k over all rows are OBC's cut of k (see the module's doc): the
    weight a row removes at step t scores that row's t-th smallest step cost."""
    scores = torch.empty_like(cost)
    scores.scatter_(1, order, cost.sort(1).values)
    return scores


def _traced(w: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
    h_inv = torch.linalg.inv(h).float()
    w = w.detach().float().contiguous()
    key = hashlib.sha1(w.numpy().tobytes() + h_inv.numpy().tobytes()).hexdigest()
    if key not in _TRACES:
        if len(_TRACES) >= 16:
            _TRACES.pop(next(iter(_TRACES)))
        _TRACES[key] = greedy_traces(w, h_inv)
    return _TRACES[key]


def obs_weight_scores(model: Net, batches: Batches) -> Scores:
    """Per weight, the OBC cost that ranks it (module doc); lower is cut first."""
    hessians = layer_hessians(model, batches)
    out = {}
    for prefix, m in weighted_layers(model):
        w = m.weight.detach().flatten(1).cpu()
        out[f"{prefix}.weight"] = trace_scores(*_traced(w, hessians[prefix])).view(
            m.weight.shape).to(m.weight.device)
    return out


def refit_rows(w: Tensor, h: Tensor, keep: Tensor) -> Tensor:
    """Each row of `w` (rows × d) refit by least squares on its kept columns:
    w'_R = w_R + H_RR⁻¹ H_RQ w_Q, and 0 on the removed Q (float64)."""
    w, keep = w.double(), keep.bool()
    out = torch.zeros_like(w)
    for i in range(len(w)):
        r, q = keep[i], ~keep[i]
        if bool(r.any()):
            rhs = h[r][:, q] @ w[i, q]
            out[i, r] = w[i, r] + torch.linalg.solve(h[r][:, r], rhs)
    return out


def refit_weights(dense: Net, cut: Net, kept: dict[str, Tensor], batches: Batches) -> None:
    """OBS's update of every masked layer of `cut`: its kept weights refit on the dense
    model's calibration inputs (torch.nn.utils.prune keeps the cut ones at 0)."""
    hessians = layer_hessians(dense, batches)
    dense_modules, cut_modules = dict(dense.named_modules()), dict(cut.named_modules())
    with torch.no_grad():
        for name, mask in kept.items():
            prefix = name.rsplit(".", 1)[0]
            w = dense_modules[prefix].weight.detach().flatten(1).cpu()
            new = refit_rows(w, hessians[prefix], mask.flatten(1).cpu())
            orig = cut_modules[prefix].weight_orig
            orig.copy_(new.view(orig.shape).to(orig))


def _unit_columns(consumer: nn.Module, span: int) -> int:
    """How many of the consumer's input columns (its unfolded features) one unit owns."""
    if isinstance(consumer, nn.Conv2d):
        return int(consumer.kernel_size[0] * consumer.kernel_size[1])
    return span


def unit_trace(w: Tensor, h_inv: Tensor, block: int) -> tuple[Tensor, Tensor]:
    """Structured OBS's greedy trace over units (blocks of `block` consecutive columns of
    `w`, outputs × d): (order, cost) as in `greedy_traces`, float64."""
    w, h_inv = w.double().clone(), h_inv.double().clone()
    units = w.shape[1] // block
    left = list(range(units))
    order, cost = [], []
    for _ in range(units):
        cols = torch.tensor(left)[:, None] * block + torch.arange(block)  # (left, block)
        blocks = torch.linalg.inv(h_inv[cols[:, :, None], cols[:, None, :]])
        wj = w[:, cols].permute(1, 0, 2)  # (left, outputs, block)
        costs = 0.5 * torch.einsum("uob,ubc,uoc->u", wj, blocks, wj)
        best = int(costs.argmin())
        j, inv_jj = cols[best], blocks[best]
        w -= w[:, j] @ inv_jj @ h_inv[j, :]
        h_inv -= h_inv[:, j] @ inv_jj @ h_inv[j, :]
        order.append(left.pop(best))
        cost.append(float(costs[best]))
    return torch.tensor(order), torch.tensor(cost, dtype=torch.float64)


def obs_unit_scores(model: Net, batches: Batches) -> UnitScores:
    """Per hidden unit, the trace's total cost when it removes that unit (module doc)."""
    hessians = layer_hessians(model, batches)
    modules = dict(model.named_modules())
    out = []
    for g in unit_groups(model):
        consumer = modules[g.consumer]
        block = _unit_columns(consumer, g.span)
        w = consumer.weight.detach().flatten(1).cpu()
        order, cost = unit_trace(w, torch.linalg.inv(hessians[g.consumer]), block)
        scores = torch.empty(len(order), dtype=torch.float64)
        scores[order] = cost.cumsum(0)
        out.append(scores.float().to(consumer.weight.device))
    return out


def refit_units(dense: Net, small: Net, kept: dict[str, Tensor], batches: Batches) -> None:
    """Structured OBS's update: each cut layer's consumer in the smaller model refit by
    least squares on the kept units' columns, W H[:, K] H_KK⁻¹ (dense model's inputs)."""
    hessians = layer_hessians(dense, batches)
    dense_modules, small_modules = dict(dense.named_modules()), dict(small.named_modules())
    groups = unit_groups(dense)
    keeps = [kept[f"units.{i}"].bool().cpu() for i in range(len(groups))]
    producers = {g.producer: k for g, k in zip(groups, keeps, strict=True)}
    with torch.no_grad():
        for g, keep in zip(groups, keeps, strict=True):
            consumer = dense_modules[g.consumer]
            h = hessians[g.consumer]
            cols = keep.repeat_interleave(_unit_columns(consumer, g.span))
            w = consumer.weight.detach().flatten(1).cpu().double()
            new = w @ h[:, cols] @ torch.linalg.inv(h[cols][:, cols])
            if g.consumer in producers:  # the consumer is itself cut: its kept rows only
                new = new[producers[g.consumer]]
            target = small_modules[g.consumer].weight
            target.copy_(new.view(target.shape).to(target))


_OBS = "½·w_q²/[H⁻¹]_qq with δ = −(w_q/[H⁻¹]_qq)·H⁻¹[:, q] (Hassibi & Stork 1993, Eq. 5), " \
    "H the layer's input Hessian 2XXᵀ (Dong et al. 2017; Frantar & Alistarh 2022)"
register(Registration(
    "obs", "input statistics", "surgeon",
    lambda _c, _seed: Criterion(obs_weight_scores, refit_weights, scope="layer"),
    lambda _c, _seed: Criterion(obs_unit_scores, refit_units, scope="layer"), cite=_OBS))
register(Registration(
    "obs-noupdate", "input statistics", "score",
    lambda _c, _seed: Criterion(obs_weight_scores, scope="layer"),
    lambda _c, _seed: Criterion(obs_unit_scores, scope="layer"),
    cite="obs's choice without its update (an ablation)", ablation_of="obs"))
