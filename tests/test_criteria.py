"""Every criterion on a 2-3-2 network with set weights, against scores worked out by hand.

Network: x (2) -> W1 (3x2) -> ReLU -> W2 (2x3) -> logits, biases zero,
  W1 = [[1, -2], [2, 0], [-1, 3]],  W2 = [[1, 0, 1], [0, 1, -1]].
Two calibration batches of one example each:
  ex1: x = [1, 0], y = 0  ->  a = [1, 2, 0],  logits = [1, 2]
       dL/dlogits = softmax - onehot = [-q, q] with q = σ(1)
       dL/da = W2ᵀ[-q, q] = [-q, q, -2q];  ReLU' = [1, 1, 0]  ->  dL/dz = [-q, q, 0]
       dL/dW1 = dz xᵀ = [[-q, 0], [q, 0], [0, 0]];  dL/dW2 = [[-q, -2q, 0], [q, 2q, 0]]
  ex2: x = [0, 1], y = 1  ->  z = [-2, 0, 3], a = [0, 0, 3],  logits = [3, -3]
       dL/dlogits = [r, -r] with r = σ(6)
       dL/da = [r, -r, 2r];  ReLU' = [0, 0, 1] (PyTorch: 0 at z = 0)  ->  dL/dz = [0, 0, 2r]
       dL/dW1 = [[0, 0], [0, 0], [0, 2r]];  dL/dW2 = [[0, 0, 3r], [0, 0, -3r]]
"""

from __future__ import annotations

import math

import pytest
import torch

from prunelab.criteria.first_order import (
    fisher_scores,
    fisher_unit_scores,
    gradient_scores,
    gradient_unit_scores,
    taylor_scores,
    taylor_unit_scores,
)
from prunelab.criteria.magnitude_activity import (
    activation_unit_scores,
    activation_weight_scores,
    magnitude_scores,
    magnitude_unit_scores,
    random_scores,
    random_unit_scores,
    wanda_raw,
    wanda_scores,
    wanda_unit_scores,
)
from prunelab.models import ModelSpec, Net
from prunelab.prune.masks import select

from helpers import net_2_3_2

q = 1 / (1 + math.exp(-1))
r = 1 / (1 + math.exp(-6))
W1 = [[1.0, -2.0], [2.0, 0.0], [-1.0, 3.0]]
W2 = [[1.0, 0.0, 1.0], [0.0, 1.0, -1.0]]
BATCHES = [
    (torch.tensor([[1.0, 0.0]]), torch.tensor([0])),
    (torch.tensor([[0.0, 1.0]]), torch.tensor([1])),
]


@pytest.fixture
def tiny() -> Net:
    return tiny_net()


def tiny_net() -> Net:
    """The 2-3-2 network of this module's docstring."""
    net: Net = net_2_3_2(W1, W2)
    return net


def close(got: torch.Tensor, want: list) -> None:
    torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float32), rtol=1e-5, atol=1e-6)


def test_magnitude(tiny: Net) -> None:
    s = magnitude_scores(tiny)
    close(s["body.0.weight"], [[1, 2], [2, 0], [1, 3]])
    close(s["body.2.weight"], [[1, 0, 1], [0, 1, 1]])


def test_gradient_is_mean_abs_gradient_over_batches(tiny: Net) -> None:
    s = gradient_scores(tiny, BATCHES)
    close(s["body.0.weight"], [[q / 2, 0], [q / 2, 0], [0, r]])
    close(s["body.2.weight"], [[q / 2, q, 3 * r / 2], [q / 2, q, 3 * r / 2]])


def test_taylor_is_mean_abs_weight_times_gradient(tiny: Net) -> None:
    s = taylor_scores(tiny, BATCHES)
    close(s["body.0.weight"], [[q / 2, 0], [q, 0], [0, 3 * r]])
    close(s["body.2.weight"], [[q / 2, 0, 3 * r / 2], [0, q, 3 * r / 2]])


def test_activation_weight_is_magnitude_times_mean_abs_input(tiny: Net) -> None:
    # mean |x| = [0.5, 0.5];  mean a = ([1, 2, 0] + [0, 0, 3]) / 2 = [0.5, 1, 1.5]
    s = activation_weight_scores(tiny, BATCHES)
    close(s["body.0.weight"], [[0.5, 1], [1, 0], [0.5, 1.5]])
    close(s["body.2.weight"], [[0.5, 0, 1.5], [0, 1, 1.5]])


def test_wanda_is_magnitude_times_input_norm_ranked_within_each_row(tiny: Net) -> None:
    # ‖x_j‖₂ over both examples = [1, 1], so layer 1's raw scores are |W1|; ‖a_j‖₂ = [1, 2, 3]
    # so layer 2's are [[1, 0, 3], [0, 2, 3]]. Scores are the rank in the row, (r + 1)/d.
    close(wanda_raw(tiny, BATCHES)["body.2.weight"], [[1, 0, 3], [0, 2, 3]])
    s = wanda_scores(tiny, BATCHES)
    close(s["body.0.weight"], [[0.5, 1], [1, 0.5], [0.5, 1]])
    close(s["body.2.weight"], [[2 / 3, 1 / 3, 1], [1 / 3, 2 / 3, 1]])
    # Any cut takes the same number from each row: 3 of layer 2's 6 weights -> 1 or 2 a row.
    keep = select({"w": s["body.2.weight"]}, sparsity=0.5, normalize=False)["w"]
    assert keep.sum(1).tolist() in ([1, 2], [2, 1])
    (units,) = wanda_unit_scores(tiny, BATCHES)
    close(units, [3, 2, 4])


def test_unit_magnitude_l1_and_l2(tiny: Net) -> None:
    (l1,) = magnitude_unit_scores(tiny, norm="l1")
    (l2,) = magnitude_unit_scores(tiny, norm="l2")
    close(l1, [3, 2, 4])
    close(l2, [math.sqrt(5), 2, math.sqrt(10)])


def test_unit_activation_mean_and_apoz(tiny: Net) -> None:
    (mean,) = activation_unit_scores(tiny, BATCHES, stat="mean")
    (apoz,) = activation_unit_scores(tiny, BATCHES, stat="apoz")
    close(mean, [0.5, 1, 1.5])
    close(apoz, [0.5, 0.5, 0.5])  # each unit is zero on exactly one of the two examples


def test_unit_gradient_is_mean_abs_dl_da(tiny: Net) -> None:
    # |dL/da|: ex1 [q, q, 2q], ex2 [r, r, 2r]
    (s,) = gradient_unit_scores(tiny, BATCHES)
    close(s, [(q + r) / 2, (q + r) / 2, q + r])


def test_unit_taylor_is_per_example_abs_of_a_times_dl_da_averaged(tiny: Net) -> None:
    # a·dL/da: ex1 [1·-q, 2·q, 0·-2q] = [-q, 2q, 0];  ex2 [0, 0, 3·2r] = [0, 0, 6r]
    # |.| per example, then the mean over the two examples.
    (s,) = taylor_unit_scores(tiny, BATCHES)
    close(s, [q / 2, q, 3 * r])


def test_unit_taylor_takes_the_absolute_value_per_example(tiny: Net) -> None:
    # Molchanov et al. 2017 average |a·dL/da| over examples. Example 1 with label 1 instead
    # of 0: logits [1, 2], dL/dlogits = [1 - q, q - 1], dL/da = (1 - q)[1, -1, 2], so
    # a·dL/da = (1 - q)[1, -2, 0], the opposite sign of the original's [-q, 2q, 0].
    # Per example |.| then mean: [1/2, 1, 0]. The old |mean| gave |1 - 2q|/2 = 0.23 for unit 0.
    flipped = (torch.tensor([[1.0, 0.0]]), torch.tensor([1]))
    (s,) = taylor_unit_scores(tiny, [BATCHES[0], flipped])
    one_minus = 1 - q  # dL/dlogit of class 0 for label 1 is softmax_0 = 1 - σ(1)
    close(s, [(q + one_minus) / 2, (2 * q + 2 * one_minus) / 2, 0])


def test_weight_fisher_is_mean_over_batches_of_squared_w_times_g(tiny: Net) -> None:
    # w·dL/dw per batch (each batch one example): ex1 W1: [[-q, 0], [2q, 0], [0, 0]],
    # ex2 W1: [[0, 0], [0, 0], [0, 6r]]; squared and averaged over the two batches.
    s = fisher_scores(tiny, BATCHES)
    close(s["body.0.weight"], [[q * q / 2, 0], [2 * q * q, 0], [0, 18 * r * r]])
    # W2 = [[1, 0, 1], [0, 1, -1]]; dL/dW2: ex1 [[-q, -2q, 0], [q, 2q, 0]],
    # ex2 [[0, 0, 3r], [0, 0, -3r]] -> w·g: ex1 [[-q, 0, 0], [0, 2q, 0]], ex2 [[0,0,3r],[0,0,3r]]
    close(s["body.2.weight"], [[q * q / 2, 0, 9 * r * r / 2], [0, 2 * q * q, 9 * r * r / 2]])


def test_unit_fisher_squares_the_batch_sum_of_a_times_dl_da(tiny: Net) -> None:
    # One batch of both examples: G = (Σ a·dL/da) / 2 (batch-mean loss)
    #   = ([-q, 2q, 0] + [0, 0, 6r]) / 2 = [-q/2, q, 3r];  score G².
    both = [(torch.cat([BATCHES[0][0], BATCHES[1][0]]), torch.tensor([0, 1]))]
    (s,) = fisher_unit_scores(tiny, both)
    close(s, [q * q / 4, q * q, 9 * r * r])
    # Two batches of one example each: mean of the squares, [q²/2, 2q², 18r²].
    (s2,) = fisher_unit_scores(tiny, BATCHES)
    close(s2, [q * q / 2, 2 * q * q, 18 * r * r])


def test_random_is_seeded_and_uniform(tiny: Net) -> None:
    a, b, c = random_scores(tiny, seed=1), random_scores(tiny, seed=1), random_scores(tiny, seed=2)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["body.0.weight"], c["body.0.weight"])
    assert all(((v >= 0) & (v < 1)).all() for v in a.values())
    (u,) = random_unit_scores(tiny, seed=1)
    assert u.shape == (3,)


def test_conv_channel_scores_average_over_examples_and_positions() -> None:
    from prunelab.models import build_model

    torch.manual_seed(0)
    net = build_model(ModelSpec("lenet5", (2, 3, 4)))
    x, y = torch.rand(5, 1, 28, 28), torch.arange(5)
    # By hand: the first conv block's ReLU output, averaged over examples and positions.
    a1 = net.body[:3](x)
    (mean1, _, _) = activation_unit_scores(net, [(x, y)])
    torch.testing.assert_close(mean1, a1.mean((0, 2, 3)))
    # dL/da1 per example (loss summed), |.| averaged over examples and positions.
    a1 = a1.detach().requires_grad_()
    loss = torch.nn.functional.cross_entropy(net.body[3:](a1), y, reduction="sum")
    (g1,) = torch.autograd.grad(loss, a1)
    (grad1, _, _) = gradient_unit_scores(net, [(x, y)])
    torch.testing.assert_close(grad1, g1.abs().mean((0, 2, 3)))
    (tay1, _, _) = taylor_unit_scores(net, [(x, y)])
    torch.testing.assert_close(tay1, (a1 * g1).mean((2, 3)).abs().mean(0))
    # fisher: a channel's gate gradient sums its positions; batch-mean loss, squared.
    (fis1, _, _) = fisher_unit_scores(net, [(x, y)])
    torch.testing.assert_close(fis1, ((a1 * g1).sum((0, 2, 3)) / len(x)).pow(2))


def test_every_registered_criterion_scores_at_each_of_its_granularities(tiny: Net) -> None:
    from prunelab.config import Granularity
    from prunelab.criteria.registry import registered
    from prunelab.prune.granularity import GRANULARITIES

    assert set(GRANULARITIES) == set(Granularity.__args__)
    regs = registered()
    assert {"gradient", "taylor", "fisher", "obs", "magnitude", "random"} <= set(regs)
    for method, reg in regs.items():
        assert reg.granularities, method
        for name in reg.granularities:
            settings = reg.parse_settings(None)  # its defaults
            scores = GRANULARITIES[name].scorer(method, settings, 0)(tiny, BATCHES)
            assert len(scores) == (2 if name == "weight" else 1)
