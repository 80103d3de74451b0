"""WoodFisher (criteria/woodfisher.py) against numbers worked out by hand.

One layer of 1×3 weights w = [1, 1.2, 1.5] and three per-example gradients
g₁ = [1, 1, 0], g₂ = [1, 0, 0], g₃ = [0, 0, 1] (no damping):
  F = 1/3 Σ g gᵀ = 1/3·[[2, 1, 0], [1, 1, 0], [0, 0, 1]],  F⁻¹ = [[3, -3, 0], [-3, 6, 0], [0, 0, 3]]
  ρ_q = w_q²/(2[F⁻¹]_qq) = [1/6, 1.44/12 = 0.12, 2.25/6 = 0.375]  -> q = 1 goes first,
  although |w| would cut q = 0 (magnitude's choice; the Fisher changes it)
  update δw = -(w_1/[F⁻¹]_11)·F⁻¹e_1 = -(1.2/6)·[-3, 6, 0] = [0.6, -1.2, 0]: w' = [1.6, 0, 1.5]
  loss change of the quadratic ½δᵀFδ: Fδ = [0, -0.2, 0], δ·Fδ = 0.24 -> 0.12 = ρ_1;
  without the update, ½·w_1²·F_11 = ½·1.44/3 = 0.24: the surgeon's update halves it.
Both of q = {0, 1} at once: [F⁻¹]_QQ⁻¹ = [[2/3, 1/3], [1/3, 1/3]], δw = -F⁻¹[:, Q]·that·w_Q
  = [-1, -1.2, 0] (w' = [0, 0, 1.5]); the sum of the two single updates, [-1, 1, 0] +
  [0.6, -1.2, 0] = [-0.4, -0.2, 0], is not it.
Then the unit trace on the same row (3 units, one column each): unit 1 (0.12), then with
  F⁻¹ ← F⁻¹ - F⁻¹e_1e_1ᵀF⁻¹/6 = [[1.5, 0, 0], [0, 0, 0], [0, 0, 3]] and w = [1.6, 0, 1.5]:
  unit 0 costs ½·2.56/1.5 = 0.8533, unit 2 ½·2.25/3 = 0.375 -> unit 2, then unit 0.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from prunelab.criteria.woodfisher import (
    Blocks,
    WoodfisherSettings,
    _FisherSum,
    chunking,
    per_example_gradients,
    remove,
    unit_trace,
    weight_trace,
)
from prunelab.data import Split
from prunelab.models import Net, baked, weighted_layers
from prunelab.prune.granularity import GRANULARITIES
from prunelab.prune.procedure import calibration_batches

G = torch.tensor([[[1.0, 1.0, 0.0]], [[1.0, 0.0, 0.0]], [[0.0, 0.0, 1.0]]])  # (n, rows, d)
W = torch.tensor([[1.0, 1.2, 1.5]], dtype=torch.float64)
F_HAND = torch.tensor([[2.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
                      dtype=torch.float64) / 3


def hand_blocks() -> Blocks:
    acc = _FisherSum(unit=1, block=128)
    acc.add(G)
    return acc.damped(0.0)


def quadratic(delta: torch.Tensor) -> float:
    return float(0.5 * delta @ F_HAND @ delta)


def test_the_fisher_is_the_mean_outer_product_of_per_example_gradients() -> None:
    b = hand_blocks()
    torch.testing.assert_close(b.fisher[0, 0], F_HAND)
    # Damping adds λ × the mean diagonal (here 4/9) to every diagonal entry.
    acc = _FisherSum(unit=1, block=128)
    acc.add(G)
    damped = acc.damped(0.5).fisher[0, 0]
    torch.testing.assert_close(damped, F_HAND + 0.5 * (4 / 9) * torch.eye(3, dtype=torch.float64))


def test_one_weight_removed_with_its_update_costs_what_the_quadratic_says() -> None:
    f_inv = torch.linalg.inv(hand_blocks().fisher[0, 0])
    rho = W[0].pow(2) / (2 * f_inv.diagonal())
    torch.testing.assert_close(rho, torch.tensor([1 / 6, 0.12, 0.375], dtype=torch.float64))
    assert int(rho.argmin()) == 1 and int(W[0].abs().argmin()) == 0
    q = torch.tensor([False, True, False])
    new, f_left = remove(W[0], f_inv, q)
    torch.testing.assert_close(new, torch.tensor([1.6, 0.0, 1.5], dtype=torch.float64))
    assert quadratic(new - W[0]) == pytest.approx(0.12)
    assert quadratic(torch.tensor([0.0, -1.2, 0.0], dtype=torch.float64)) == pytest.approx(0.24)
    # What is left of F⁻¹ is the Schur complement: the inverse of F over {0, 2}.
    torch.testing.assert_close(f_left, torch.tensor(
        [[1.5, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 3.0]], dtype=torch.float64))
    keep = torch.tensor([0, 2])
    torch.testing.assert_close(f_left[keep][:, keep], torch.linalg.inv(F_HAND[keep][:, keep]))


def test_a_set_is_removed_at_once_not_as_a_sum_of_single_updates() -> None:
    f_inv = torch.linalg.inv(hand_blocks().fisher[0, 0])
    new, _ = remove(W[0], f_inv, torch.tensor([True, True, False]))
    torch.testing.assert_close(new, torch.tensor([0.0, 0.0, 1.5], dtype=torch.float64))
    singles = W[0] + torch.tensor([-1.0, 1.0, 0.0]) + torch.tensor([0.6, -1.2, 0.0])
    assert not torch.allclose(new, singles.double())
    w_q = W[0, :2]
    cost = 0.5 * w_q @ torch.linalg.inv(f_inv[:2, :2]) @ w_q
    assert quadratic(new - W[0]) == pytest.approx(float(cost))


def test_the_weight_trace_ranks_by_the_fisher_not_by_magnitude() -> None:
    """3 weights: the first step halves the layer (removes 2 at once: ρ's lowest, 1 then 0),
    the last removes weight 2. A cut of one takes weight 1, where |w| takes weight 0."""
    scores = weight_trace(W.float(), hand_blocks())
    assert scores.argsort().tolist() == [[1, 0, 2]]
    assert float(scores[0, 2]) >= 1  # a later step


def test_the_unit_trace_by_hand() -> None:
    order, cost = unit_trace(W.float(), hand_blocks(), unit=1)
    assert order.tolist() == [1, 2, 0]
    torch.testing.assert_close(cost, torch.tensor([0.12, 0.375, 2.56 / 3], dtype=torch.float64))


def test_steps_replayed_end_where_one_removal_of_their_union_does() -> None:
    """For a fixed F, removing Q₁, then Q₂ with the Schur-updated inverse ends at the group
    update of Q₁ ∪ Q₂ from the start (why the refit need not replay the trace)."""
    g = torch.Generator().manual_seed(0)
    grads = torch.randn(40, 2, 8, generator=g)
    acc = _FisherSum(unit=1, block=4)  # two chunks of 4 per row
    acc.add(grads)
    b = acc.damped(1e-3)
    f_inv = torch.linalg.inv(b.fisher)
    w = torch.randn(2, 2, 4, generator=g, dtype=torch.float64)
    q1 = torch.rand(2, 2, 4, generator=g) < 0.3
    q2 = (torch.rand(2, 2, 4, generator=g) < 0.4) & ~q1
    stepped, f_mid = remove(w, f_inv, q1)
    stepped, _ = remove(stepped, f_mid, q2)
    once, _ = remove(w, f_inv, q1 | q2)
    torch.testing.assert_close(stepped, once, atol=1e-9, rtol=0)
    assert bool((once[q1 | q2] == 0).all())


def test_chunks_hold_whole_units() -> None:
    assert chunking(784, 1, 128) == (7, 112)
    assert chunking(128, 1, 128) == (1, 128)
    assert chunking(150, 25, 128) == (2, 75)   # a conv consumer: 6 channels of 5×5 taps
    assert chunking(256, 16, 128) == (2, 128)  # 16 channels of a flattened 4×4 map


def test_per_example_gradients_are_each_examples_own(trained_mlp: Net,
                                                     small_splits: tuple[Split, Split, Split]
                                                     ) -> None:
    train, _, _ = small_splits
    x, y = train.x[:5], train.y[:5]
    (batch,) = per_example_gradients(trained_mlp, [(x, y)], examples=5)
    weights = [m.weight for _, m in weighted_layers(trained_mlp)]
    for i in range(5):
        loss = F.cross_entropy(trained_mlp(x[i : i + 1]), y[i : i + 1])
        for (prefix, _), g in zip(weighted_layers(trained_mlp),
                                  torch.autograd.grad(loss, weights), strict=True):
            torch.testing.assert_close(batch[prefix][i], g.flatten(1), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("granularity", ["weight", "neuron"])
def test_woodfisher_update_lowers_the_loss_of_its_cut(
        granularity: str, trained_mlp: Net, small_splits: tuple[Split, Split, Split]) -> None:
    """On the trained mlp and real images: woodfisher cuts exactly the target, and its
    update gives a lower loss on the calibration images than the same cut without it (what
    the update minimises, in the quadratic model of that loss)."""
    from prunelab.criteria import woodfisher

    from helpers import shipped_prune

    train, _, _ = small_splits
    calib = calibration_batches(train, 8, 128, seed=0)
    gran = GRANULARITIES[granularity]
    sparsity = 0.75 if granularity == "weight" else 0.5
    s = shipped_prune("woodfisher", granularity, sparsity=sparsity, seed=0)
    settings = WoodfisherSettings()
    assert s.criterion == settings
    cut = gran.prune(trained_mlp, calib, s)
    settled = gran.settled(s)
    scores = gran.criterion_for(settled).score(baked(trained_mlp), calib)
    plain = gran.cut(baked(trained_mlp), scores, settled, None)  # the same cut, no update
    assert [k.tolist() for k in plain.kept.values()] == [k.tolist() for k in cut.kept.values()]
    if granularity == "weight":
        layer = cut.kept["body.2.weight"]
        assert float(1 - layer.float().mean()) == pytest.approx(sparsity, abs=1e-3)
    x = torch.cat([b[0] for b in calib])
    y = torch.cat([b[1] for b in calib])
    with torch.no_grad():
        losses = {name: float(F.cross_entropy(m(x), y))
                  for name, m in (("update", cut.model), ("plain", plain.model))}
    assert losses["update"] < losses["plain"], losses
    assert woodfisher._FISHERS  # the refit reused the scoring's Fisher

