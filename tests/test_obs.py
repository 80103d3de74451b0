"""Optimal Brain Surgeon (criteria/second_order.py) against numbers worked out by hand.

One row w = [1, 2, 1.5] with H = [[2, 1, 0], [1, 2, 0], [0, 0, 2]]:
  H⁻¹ = [[2/3, -1/3, 0], [-1/3, 2/3, 0], [0, 0, 1/2]]
  costs ½ w_q²/[H⁻¹]_qq:  q=0: ½·1/(2/3) = 0.75,  q=1: ½·4/(2/3) = 3,  q=2: ½·2.25/½ = 2.25
  -> q = 0 goes first; update δ = -(1/(2/3))·[2/3, -1/3, 0] = [-1, 0.5, 0], w' = [0, 2.5, 1.5]
  error ½ δ H δᵀ: H δ = [-1.5, 0, 0], δ·Hδ = 1.5 -> 0.75, OBS's predicted cost.
  Least squares on the rest: w'_R = w_R + H_RR⁻¹ H_R0 w_0 = [2, 1.5] + [½·1, 0] = [2.5, 1.5].
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from prunelab.criteria.second_order import (
    greedy_traces,
    layer_hessians,
    obs_unit_scores,
    refit_rows,
    refit_units,
    trace_scores,
    unit_trace,
)
from prunelab.data import Split
from prunelab.models import ModelSpec, Net
from prunelab.prune.granularity import GRANULARITIES
from prunelab.prune.procedure import calibration_batches

H = torch.tensor([[2.0, 1.0, 0.0], [1.0, 2.0, 0.0], [0.0, 0.0, 2.0]], dtype=torch.float64)
W = torch.tensor([[1.0, 2.0, 1.5]], dtype=torch.float64)


def error(w_new: torch.Tensor, w: torch.Tensor, h: torch.Tensor) -> float:
    d = w_new - w
    return float(0.5 * (d @ h @ d.T).trace())


def test_obs_removes_the_cheapest_weight_and_its_update_is_the_least_squares_refit() -> None:
    order, cost = greedy_traces(W, torch.linalg.inv(H))
    assert int(order[0, 0]) == 0
    assert float(cost[0, 0]) == pytest.approx(0.75, abs=1e-6)
    refit = refit_rows(W, H, torch.tensor([[False, True, True]]))
    torch.testing.assert_close(refit, torch.tensor([[0.0, 2.5, 1.5]], dtype=torch.float64),
                               atol=1e-6, rtol=0)
    assert error(refit, W, H) == pytest.approx(0.75, abs=1e-6)
    # Without the update the same removal costs ½ w_0² H_00 = 1: the surgeon's update pays.
    assert error(torch.tensor([[0.0, 2.0, 1.5]], dtype=torch.float64), W, H) == pytest.approx(1)


def test_refit_equals_the_greedy_trace_replayed_with_its_updates() -> None:
    """The sequential OBS updates of a trace's first k steps end at the least-squares
    refit on what is left (so `refit` need not replay the trace)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 6, generator=g, dtype=torch.float64)
    h = 2 * x.T @ x / 200
    w = torch.randn(3, 6, generator=g, dtype=torch.float64)
    order, _ = greedy_traces(w, torch.linalg.inv(h))
    for k in (1, 3, 5):
        replay = w.clone()
        for i in range(3):
            hi = torch.linalg.inv(h)
            for q in order[i, :k]:
                replay[i] -= replay[i, q] / hi[q, q] * hi[:, q]
                hi -= torch.outer(hi[:, q], hi[q, :]) / hi[q, q]
        keep = torch.ones(3, 6, dtype=torch.bool)
        keep.scatter_(1, order[:, :k], False)
        torch.testing.assert_close(refit_rows(w, h, keep), replay * keep, atol=1e-9, rtol=0)


def test_trace_scores_cut_the_cheapest_steps_of_all_rows() -> None:
    """OBC's rule: a cut of k takes each row's first c steps, c its count among the k
    cheapest step costs of the layer."""
    order = torch.tensor([[2, 0, 1], [1, 2, 0]])
    cost = torch.tensor([[0.1, 0.5, 0.9], [0.3, 0.2, 0.8]])
    scores = trace_scores(order, cost)
    # Row 0 removes col 2, 0, 1 with sorted costs 0.1, 0.5, 0.9; row 1 cols 1, 2, 0 with
    # sorted costs 0.2, 0.3, 0.8.
    torch.testing.assert_close(scores, torch.tensor([[0.5, 0.9, 0.1], [0.8, 0.2, 0.3]]))


def test_structured_obs_update_is_the_least_squares_refit_without_the_unit() -> None:
    """A 3-unit hidden layer read by a 2×3 consumer: the cheapest unit by
    ½‖W[:, j]‖²/[H⁻¹]_jj, and the smaller model's consumer equal to the refit W H[:, K]
    H_KK⁻¹ (K the kept units), which minimises the consumer's output error."""
    g = torch.Generator().manual_seed(1)
    body = [nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)]
    with torch.no_grad():  # seeded, and every unit alive (positive weights and inputs)
        body[0].weight.copy_(torch.rand(3, 4, generator=g))
        body[0].bias.zero_()
        body[2].weight.copy_(torch.randn(2, 3, generator=g))
    net = Net(ModelSpec("mlp", (3,)), body)
    x = torch.rand(64, 4, generator=g)
    batches = [(x, torch.zeros(64, dtype=torch.long))]
    h = layer_hessians(net, batches)["body.2"]
    w = body[2].weight.detach().double()
    hi = torch.linalg.inv(h)
    costs = 0.5 * w.pow(2).sum(0) / hi.diagonal()
    order, cost = unit_trace(w, hi, 1)
    assert int(order[0]) == int(costs.argmin())
    assert float(cost[0]) == pytest.approx(float(costs.min()))
    scores = obs_unit_scores(net, batches)[0]
    assert int(scores.argmin()) == int(costs.argmin())
    keep = torch.ones(3, dtype=torch.bool)
    keep[int(costs.argmin())] = False
    small = Net(ModelSpec("mlp", (2,)), [nn.Linear(4, 2), nn.ReLU(), nn.Linear(2, 2)])
    refit_units(net, small, {"units.0": keep}, batches)
    expected = w @ h[:, keep] @ torch.linalg.inv(h[keep][:, keep])
    torch.testing.assert_close(small.body[2].weight.detach().double(), expected,
                               atol=1e-5, rtol=0)
    # ... and it reconstructs the consumer's inputs better than dropping the column alone.
    a = torch.relu(body[0](x)).detach().double()
    target = a @ w.T
    refit_err = (a[:, keep] @ expected.T - target).pow(2).sum()
    plain_err = (a[:, keep] @ w[:, keep].T - target).pow(2).sum()
    assert float(refit_err) < float(plain_err)


@pytest.mark.parametrize("granularity", ["weight", "neuron"])
def test_obs_update_brings_the_cut_model_closer_to_the_dense_one(
        granularity: str, trained_mlp: Net, small_splits: tuple[Split, Split, Split]) -> None:
    """On the trained mlp and real calibration images: obs and obs-noupdate make the same
    cut; only obs updates, and its outputs on held-out images are closer to the dense
    model's (what OBS minimises on the calibration inputs)."""
    from helpers import shipped_prune

    train, val, _ = small_splits
    calib = calibration_batches(train, 8, 128, seed=0)
    cuts = {m: GRANULARITIES[granularity].prune(
        trained_mlp, calib, shipped_prune(m, granularity, sparsity=0.9, seed=0))
        for m in ("obs", "obs-noupdate")}
    kept = [[k.tolist() for k in cuts[m].kept.values()] for m in cuts]
    assert kept[0] == kept[1]
    with torch.no_grad():
        dense = trained_mlp(val.x)
        err = {m: float((c.model(val.x) - dense).pow(2).mean()) for m, c in cuts.items()}
    assert err["obs"] < 0.8 * err["obs-noupdate"], err
