"""The set-level oracle for single weights (greedy in blocks), against brute force."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from prunelab.models import ModelSpec, baked, build_model
from prunelab.oracle.weight_sets import (
    greedy_weight_order,
    removal_damage,
    supported,
    weight_set_quality,
)


def zeroed_loss(net, x, y, flat) -> float:  # noqa: ANN001
    """Brute force: the loss with the weights at `flat` of body.2 zeroed."""
    w = net.body[2].weight
    kept = w.detach().clone()
    with torch.no_grad():
        w.view(-1)[flat] = 0
        out = float(F.cross_entropy(net(x), y))
        w.copy_(kept)
    return out


def test_removal_damage_is_the_loss_change_of_zeroing_each_weight(trained_mlp,
                                                                  small_splits) -> None:
    """On the trained mlp, with 500 of its weights already removed: each weight's damage
    is the loss of the network with it zeroed too, minus the loss (1e-9, float64)."""
    val = small_splits[1].take(200)
    net = baked(trained_mlp).double().eval()
    x, y = val.x.double(), val.y
    gone = torch.randperm(net.body[2].weight.numel(), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        net.body[2].weight.view(-1)[gone[:500]] = 0
    inputs = net.body[:2](x)
    damage = removal_damage(inputs, net.body[2].weight, net.body[2].bias, net.body[4], y)
    base = zeroed_loss(net, x, y, gone[:0])
    for flat in gone[500:520].tolist() + [int(damage.argmin()), int(damage.argmax())]:
        truth = zeroed_loss(net, x, y, torch.tensor([flat])) - base
        assert abs(float(damage.view(-1)[flat]) - truth) < 1e-9, flat
    assert supported(net, "body.2.weight")


def test_greedy_with_one_weight_blocks_takes_the_least_change_given_the_earlier_ones(
        small_splits) -> None:
    """Brute force on a 784-3-10 mlp (2,352 weights): with blocks of one weight, each of
    the greedy's first three removals is, among every remaining weight, the one whose
    removal on top of the earlier ones changes the loss least (in magnitude)."""
    val = small_splits[1].take(150)
    torch.manual_seed(0)
    model = build_model(ModelSpec("mlp", (3,)))
    net = baked(model).double().eval()
    n = net.body[2].weight.numel()
    order = greedy_weight_order(model, val, "body.2.weight", 3, block=1 / n)
    x, y = val.x.double(), val.y
    for step in range(3):
        earlier = order[:step].tolist()
        before = zeroed_loss(net, x, y, torch.tensor(earlier, dtype=torch.long))
        change = {f: abs(zeroed_loss(net, x, y, torch.tensor(earlier + [f])) - before)
                  for f in range(n) if f not in earlier}
        # The greedy measures in float32: within its rounding of the loss.
        assert change[int(order[step])] <= min(change.values()) + 1e-6, step


def test_a_criterion_ranking_in_the_greedy_order_matches_it(small_splits) -> None:
    """On a 784-16-10 mlp (12,544 weights in the pruned layer): scores that rank weights
    exactly in the greedy's order give precision@k 1 and no gap; magnitude's set is scored
    as zeroing its k smallest weights does."""
    val = small_splits[1].take(200)
    torch.manual_seed(0)
    trained_mlp = build_model(ModelSpec("mlp", (16,)))
    choose, score_on = val.take(100), type(val)(val.x[100:], val.y[100:])
    w = trained_mlp.body[2].weight.detach()
    order = greedy_weight_order(trained_mlp, choose, "body.2.weight", w.numel() // 2,
                                block=0.05)
    assert len(set(order.tolist())) == w.numel() // 2
    rank = torch.full((w.numel(),), float(w.numel()))
    rank[order] = torch.arange(len(order), dtype=torch.float32)
    out = weight_set_quality(trained_mlp, choose, score_on, "body.2.weight",
                             {"oracle-like": rank.view_as(w), "magnitude": w.abs()}, [2],
                             block=0.05)
    assert out["oracle-like"]["r2"]["precision_at_k"] == 1.0
    assert out["oracle-like"]["r2"]["loss_gap"] == 0.0
    net = baked(trained_mlp).double().eval()
    smallest = torch.argsort(w.abs().double().flatten(), stable=True)[: w.numel() // 2]
    assert out["magnitude"]["r2"]["loss"] == zeroed_loss(
        net, score_on.x.double(), score_on.y, smallest)
    # On the images it chose on, greedy's half loses less than magnitude's (on so few
    # it overfits them: on the trained 784-128-10 mlp, 100 images, magnitude's half lost
    # 0.43 nats less than greedy's on the other 100).
    own = weight_set_quality(trained_mlp, choose, choose, "body.2.weight",
                             {"magnitude": w.abs()}, [2], block=0.05)
    assert own["magnitude"]["r2"]["loss_gap"] > 0
