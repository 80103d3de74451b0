"""Pruning at initialisation and lottery tickets (`prunelab.when`), against values worked
out by hand, and IMP's rewind on the real mlp.

SNIP and GraSP on a 2-3-2 network, biases zero, one example x = [1, 2], y = 0:
  W1 = [[1, 0], [0, 1], [1, 1]]  ->  h = W1 x = [1, 2, 3] (every ReLU active)
  W2 = [[1, 0, 0], [0, 1, -1]]   ->  z = [1, -1];  with u = [-1, 1], d = uᵀz = -2
  L = softplus(d), so ∂L/∂d = p = σ(-2) and ∂²L/∂d² = p(1 - p)
  ∂d/∂W2 = u hᵀ,  ∂d/∂W1 = (W2ᵀu) xᵀ with W2ᵀu = [-1, 1, -1]
  g_W2 = p [[-1, -2, -3], [1, 2, 3]],  g_W1 = p [[-1, -2], [1, 2], [-1, -2]]
SNIP: |W ⊙ g| = p·W1 [[1, 0], [0, 2], [1, 2]], p·W2 [[1, 0, 0], [0, 2, 3]]; their sum is 12p,
  so s = those /12 (p cancels).
GraSP: H = p(1-p) J Jᵀ + p ∂²d/∂W² (J = ∂d/∂W; ReLU'' = 0 off the kink). With v = g:
  Jᵀv = p‖J‖² = p(‖u‖²‖h‖² + ‖W2ᵀu‖²‖x‖²) = p(2·14 + 3·5) = 43p
  the bilinear term of d = uᵀW2W1x: in direction v it is u (V1x)ᵀ on W2 and (V2ᵀu)xᵀ on W1,
  V1x = 5p [-1, 1, -1], V2ᵀu = 2p [1, 2, 3]
  Hg_W2 = 43p²(1-p) [[-1, -2, -3], [1, 2, 3]] + 5p² [[1, -1, 1], [-1, 1, -1]]
  Hg_W1 = 43p²(1-p) [[-1, -2], [1, 2], [-1, -2]] + 2p² [[1, 2], [2, 4], [3, 6]]
  keep-scores θ ⊙ Hg (GraSP removes the highest -θ ⊙ Hg).

SynFlow on the 2-3-2 network W1 = [[1, -2], [2, 0], [-1, 3]], W2 = [[1, 0, 1], [0, 1, -1]]:
  |W1| 1 = [3, 2, 4],  1ᵀ|W2| = [1, 1, 2],  R = 13
  S_W1[i, j] = (1ᵀ|W2|)_i |W1_ij| = [[1, 2], [2, 0], [2, 6]]
  S_W2[k, i] = |W2_ki| (|W1| 1)_i = [[3, 0, 4], [0, 2, 4]]
  with W2[0, 0] masked: 1ᵀ|W2| = [0, 1, 2]: S_W1 = [[0, 0], [2, 0], [2, 6]],
  S_W2 = [[0, 0, 4], [0, 2, 4]]
"""

from __future__ import annotations

import copy
import math

import pytest
import torch

from prunelab.data import Split
from prunelab.models import Net, build_model
from prunelab.prune.masks import prunable_names
from prunelab.training import fit, seed_everything
from prunelab.when.at_init import (
    global_keep,
    grasp_scores,
    snip_scores,
    synflow_masks,
    synflow_scores,
)
from prunelab.when.init_point import (
    InitSettings,
    init_masks,
    init_point,
    initialised,
    variant_model,
)
from prunelab.when.lottery import (
    LADDER_RATE,
    layer_rates,
    magnitude_round,
    reinitialised,
    rewound,
    rounds_to,
)

from helpers import net_2_3_2, shipped_fit

NAMES = ["body.0.weight", "body.2.weight"]


def close(got: torch.Tensor, want: torch.Tensor | list[list[float]]) -> None:
    want = torch.as_tensor(want, dtype=got.dtype)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)


ACTIVE = ([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], [[1.0, 0.0, 0.0], [0.0, 1.0, -1.0]])
ONE_EXAMPLE = [(torch.tensor([[1.0, 2.0]]), torch.tensor([0]))]


def test_snip_is_the_normalised_connection_sensitivity_worked_by_hand() -> None:
    s = snip_scores(net_2_3_2(*ACTIVE), ONE_EXAMPLE, NAMES)
    close(s["body.0.weight"], torch.tensor([[1, 0], [0, 2], [1, 2]]) / 12)
    close(s["body.2.weight"], torch.tensor([[1, 0, 0], [0, 2, 3]]) / 12)


def test_grasp_is_theta_times_the_hessian_gradient_product_worked_by_hand() -> None:
    p = 1 / (1 + math.exp(2))
    curv, w1, w2 = 43 * p * p * (1 - p), torch.tensor(ACTIVE[0]), torch.tensor(ACTIVE[1])
    hg2 = curv * torch.tensor([[-1, -2, -3], [1, 2, 3]]) + 5 * p * p * torch.tensor(
        [[1, -1, 1], [-1, 1, -1]])
    hg1 = curv * torch.tensor([[-1, -2], [1, 2], [-1, -2]]) + 2 * p * p * torch.tensor(
        [[1, 2], [2, 4], [3, 6]])
    s = grasp_scores(net_2_3_2(*ACTIVE), ONE_EXAMPLE, NAMES)
    close(s["body.0.weight"], w1 * hg1)
    close(s["body.2.weight"], w2 * hg2)
    # The bilinear term is what makes it a Hessian and not the Gauss-Newton J Jᵀ alone.
    assert not torch.allclose(s["body.0.weight"], w1 * curv * torch.tensor(
        [[-1.0, -2.0], [1.0, 2.0], [-1.0, -2.0]]))


SYNFLOW = ([[1.0, -2.0], [2.0, 0.0], [-1.0, 3.0]], [[1.0, 0.0, 1.0], [0.0, 1.0, -1.0]])


def test_synflow_scores_are_the_path_flow_worked_by_hand_and_read_the_mask() -> None:
    net = net_2_3_2(*SYNFLOW)
    with torch.no_grad():  # biases are left out of R: nonzero ones must change nothing
        net.body[0].bias.fill_(5.0)
    s = synflow_scores(net, {}, NAMES, input_shape=(2,))
    close(s["body.0.weight"], [[1, 2], [2, 0], [2, 6]])
    close(s["body.2.weight"], [[3, 0, 4], [0, 2, 4]])
    assert float(net.body[0].weight.detach()[0, 1]) == -2.0, "the net itself is untouched"
    mask = {"body.2.weight": torch.tensor([[False, True, True], [True, True, True]])}
    s = synflow_scores(net, mask, NAMES, input_shape=(2,))
    close(s["body.0.weight"], [[0, 0], [2, 0], [2, 6]])
    close(s["body.2.weight"], [[0, 0, 4], [0, 2, 4]])


def test_one_synflow_round_keeps_the_global_top_and_more_rounds_land_on_the_density() -> None:
    net = net_2_3_2(*SYNFLOW)
    keep = synflow_masks(net, 1 / 3, NAMES, rounds=1, input_shape=(2,))
    assert keep["body.0.weight"].tolist() == [[False, False], [False, False], [False, True]]
    assert keep["body.2.weight"].tolist() == [[True, False, True], [False, False, True]]
    mlp = build_model("mlp")
    names = prunable_names(mlp, prune_output_layer=True)
    total = sum(mlp.get_parameter(n).numel() for n in names)
    masks = synflow_masks(mlp, 1 / 128, names, rounds=100)
    assert sum(int(m.sum()) for m in masks.values()) == round(total / 128)
    # SynFlow's claim (Tanaka et al. 2020, §4-5): every layer's scores sum to R, so one shot
    # cuts the widest layer first and empties it ("layer collapse"); iterated, none is.
    assert all(bool(m.any()) for m in masks.values())
    once = synflow_masks(mlp, 1 / 128, names, rounds=1)
    assert not bool(once[names[0]].any()) and int(once[names[-1]].sum()) == round(total / 128)


def test_global_keep_ranks_raw_scores_across_layers() -> None:
    scores = {"a": torch.tensor([1.0, 2.0, 3.0]), "b": torch.tensor([10.0, 20.0, 30.0])}
    keep = global_keep(scores, density=4 / 6)
    assert keep["a"].tolist() == [False, False, True] and keep["b"].tolist() == [True] * 3
    collapsed = global_keep(scores, density=0.5)  # kept as an outcome, not refused
    assert not bool(collapsed["a"].any()) and bool(collapsed["b"].all())


def _weight(model: Net, name: str) -> torch.Tensor:
    """A weight as the forward uses it (W ⊙ M where masks are held)."""
    w: torch.Tensor = model.get_submodule(name.removesuffix(".weight")).weight
    return w


def test_imp_rewinds_each_survivor_to_its_exact_value_at_iteration_k(
    small_splits: tuple[Split, Split, Split],
) -> None:
    train, val, _ = small_splits
    seed_everything(7)
    model = build_model("mlp")
    theta_0 = copy.deepcopy(model)
    fit(model, train, val, shipped_fit(lr=0.05, epochs=1, batch_size=64), seed=7)
    names = prunable_names(model, prune_output_layer=True)
    rates = layer_rates(names, 0.2, output_rate=0.1)  # Frankle & Carbin's LeNet rates
    masks = magnitude_round(model, {}, rates)
    first, out = model.get_parameter(names[0]), model.get_parameter(names[-1])
    assert int((~masks[names[0]]).sum()) == round(0.2 * first.numel())
    assert int((~masks[names[-1]]).sum()) == round(0.1 * out.numel())
    cut, kept = first.detach().abs()[~masks[names[0]]], first.detach().abs()[masks[names[0]]]
    assert float(cut.max()) <= float(kept.min()), "the cut weights are the trained smallest"
    ticket = rewound(theta_0, masks)
    for n in names:
        w, w0, m = _weight(ticket, n), theta_0.get_parameter(n), masks[n]
        assert torch.equal(w[m], w0[m]) and not bool(w[~m].any())
    assert torch.equal(ticket.body[2].bias, theta_0.body[2].bias)
    # Training the ticket moves survivors only; the next round cuts 20 % of those left.
    fit(ticket, train, val, shipped_fit(lr=0.05, epochs=1, batch_size=64), seed=7)
    assert not bool(_weight(ticket, names[0])[~masks[names[0]]].any())
    again = magnitude_round(ticket, masks, rates)
    alive = int(masks[names[0]].sum())
    assert int((~again[names[0]]).sum()) == first.numel() - alive + round(0.2 * alive)
    assert not bool((again[names[0]] & ~masks[names[0]]).any()), "what was cut stays cut"


def test_the_reinitialised_control_keeps_the_mask_and_draws_fresh_weights() -> None:
    seed_everything(3)
    model = build_model("mlp")
    masks = magnitude_round(model, {}, layer_rates(["body.2.weight"], 0.5))
    state = torch.random.get_rng_state()
    a, b = reinitialised(model, masks, seed=11), reinitialised(model, masks, seed=11)
    assert torch.equal(torch.random.get_rng_state(), state), "the caller's RNG is untouched"
    m = masks["body.2.weight"]
    assert torch.equal(a.body[2].weight, b.body[2].weight) and not bool(a.body[2].weight[~m].any())
    assert not torch.equal(a.body[2].weight[m], model.body[2].weight[m])
    assert float(a.body[2].weight.detach().abs().max()) <= 1 / math.sqrt(784), "torch's init bound"


def test_the_ladder_rate_halves_what_remains_every_third_round() -> None:
    assert rounds_to(1 / 8, LADDER_RATE) == 9 and rounds_to(0.512, 0.2) == 3


# ---- one point of pruning at initialisation (`when.init_point`), on real MNIST ----------


def _init_settings(**changes: object) -> InitSettings:
    return InitSettings(**{"calibration_batches": 2, "calibration_batch_size": 128, **changes})


def test_a_point_at_init_starts_from_the_baseline_s_own_draw() -> None:
    seed_everything(4)  # what the train stage does before building seed 4's baseline
    start = build_model("mlp")
    state = torch.random.get_rng_state()
    theta0 = initialised("mlp", 4)
    assert torch.equal(torch.random.get_rng_state(), state), "the caller's RNG is untouched"
    assert all(torch.equal(a, b) for a, b in zip(start.state_dict().values(),
                                                 theta0.state_dict().values(), strict=True))


def test_the_sanity_variants_keep_each_layer_s_density_and_change_what_they_say(
        small_splits) -> None:
    theta0 = initialised("mlp", 0)
    masks = init_masks("snip", theta0, small_splits[0], 0.1, 0, _init_settings())
    name = "body.2.weight"
    own = variant_model(theta0, masks, "mask", 0)
    shuffled = variant_model(theta0, masks, "shuffled", 0)
    fresh = variant_model(theta0, masks, "reinitialised", 0)
    w0, m = theta0.get_parameter(name), masks[name]
    for net in (own, shuffled, fresh):
        assert int(net.body[2].weight.count_nonzero()) == int(m.sum())
    assert torch.equal(own.body[2].weight[m], w0[m])
    kept = shuffled.body[2].weight != 0  # θ₀'s values at other positions of the layer
    assert not torch.equal(kept, m) and torch.equal(shuffled.body[2].weight[kept], w0[kept])
    assert not bool(fresh.body[2].weight[~m].any())
    assert not torch.equal(fresh.body[2].weight[m], w0[m]), "fresh weights, not θ₀ again"
    # Random's shuffle is drawn apart from random's own scores (else it is its very mask).
    r = init_masks("random", theta0, small_splits[0], 0.1, 0, _init_settings())
    assert not torch.equal(variant_model(theta0, r, "shuffled", 0).body[2].weight != 0, r[name])


def test_a_point_at_init_trains_the_cut_network_and_measures_it_as_the_sweep_does(
        small_splits) -> None:
    train, val, test = small_splits
    splits = {"train": train, "val": val, "test": test}
    fit_1 = shipped_fit(lr=0.05, epochs=1, batch_size=64)
    point = init_point("mlp", splits, "snip", "mask", 8.0, 0, fit_1, _init_settings(), 0.97)
    again = init_point("mlp", splits, "snip", "mask", 8.0, 0, fit_1, _init_settings(), 0.97)
    assert point["test_correct"] == again["test_correct"], "a point is a function of its key"
    assert point["sparsity"] == pytest.approx(1 - 1 / 8, abs=1e-4)
    assert point["layer_sparsity"]["body.4.weight"] == 0.0  # the output layer is kept
    assert (point["procedure"], point["variant"], point["epochs"]) == ("init", "mask", 1)
    assert point["val_accuracy"] > 0.6, "one epoch of training lifts it far above chance"
    assert point["test_accuracy_drop"] == pytest.approx(0.97 - point["test_accuracy"])
    # One-shot SynFlow at 1/128 of both layers empties the first: trained and measured.
    collapsed = init_point("mlp", splits, "synflow", "mask", 128.0, 0, fit_1,
                           _init_settings(synflow_rounds=1, prune_output_layer=True), 0.97)
    assert collapsed["layer_sparsity"]["body.2.weight"] == 1.0
    assert collapsed["val_accuracy"] < 0.2, "no path from input to output: chance"
