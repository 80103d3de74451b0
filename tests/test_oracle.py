"""The oracle (true damage of removing one unit or weight) and the agreement measures."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from prunelab.models import baked
from prunelab.oracle import agreement, unit_damage, weight_damage
from prunelab.surgery import remove_units


def test_agreement_on_hand_made_rankings() -> None:
    damage = torch.tensor([10.0, 20.0, 30.0, 40.0])
    same = agreement(torch.tensor([1.0, 2.0, 3.0, 4.0]), damage)
    assert same == {"spearman": 1.0, "spearman_abs": 1.0, "bottom_half": 1.0}
    reversed_ = agreement(torch.tensor([4.0, 3.0, 2.0, 1.0]), damage)
    assert reversed_ == {"spearman": -1.0, "spearman_abs": -1.0, "bottom_half": 0.0}
    # A negative damage (removal helps) is the least important by the signed increase
    # and among the most by its magnitude.
    signed = agreement(torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([-50.0, 20, 30, 40]))
    # |damage| ranks [4, 1, 2, 3]: d² = [9, 1, 1, 1], ρ = 1 - 6·12 / (4·15) = -0.2
    assert signed["spearman"] == 1.0 and abs(signed["spearman_abs"] + 0.2) < 1e-12
    # Ranks [1, 3, 2, 4]: d² = [0, 1, 1, 0], ρ = 1 - 6·2 / (4·15) = 0.8; bottom half {0, 2}
    # against the true {0, 1}: one of two.
    mixed = agreement(torch.tensor([1.0, 3.0, 2.0, 4.0]), damage)
    assert abs(mixed["spearman"] - 0.8) < 1e-12 and mixed["bottom_half"] == 0.5


def loss(model, split) -> float:  # noqa: ANN001
    net = baked(model).double().eval()
    with torch.no_grad():
        return float(F.cross_entropy(net(split.x.double()), split.y))


def test_unit_damage_is_the_loss_change_of_the_smaller_model(trained_mlp, small_splits) -> None:
    val = small_splits[1].take(300)
    (damage,) = unit_damage(trained_mlp, val)
    base = loss(trained_mlp, val)
    for k in (0, 17, 127):
        keep = [torch.ones(128, dtype=torch.bool)]
        keep[0][k] = False
        expected = loss(remove_units(trained_mlp, keep), val) - base
        assert abs(float(damage[k]) - expected) < 1e-9
    assert damage.abs().max() > 1e-4  # real units matter to the loss


def test_weight_damage_is_the_loss_change_of_zeroing_that_weight(trained_mlp, small_splits) -> None:
    val = small_splits[1].take(300)
    out = weight_damage(trained_mlp, val, ["body.2.weight", "body.4.weight"], 5, seed=1)
    base = loss(trained_mlp, val)
    for name, (picks, damage) in out.items():
        assert len(picks) == len(set(picks.tolist())) == 5
        layer = trained_mlp.get_submodule(name.rsplit(".", 1)[0])
        for flat, d in zip(picks.tolist(), damage.tolist(), strict=True):
            model = baked(trained_mlp)
            with torch.no_grad():
                model.get_submodule(name.rsplit(".", 1)[0]).weight.view(-1)[flat] = 0.0
            assert abs(d - (loss(model, val) - base)) < 1e-9, (name, flat)
        assert layer.weight.numel() > 5


def test_conv_weight_damage_matches_zeroing_the_tap(small_splits) -> None:
    from prunelab.models import ModelSpec, build_model

    torch.manual_seed(0)
    net = build_model(ModelSpec("lenet5", (4, 6, 8)))
    val = small_splits[1].take(50)
    out = weight_damage(net, val, ["body.1.weight", "body.4.weight"], 3, seed=0)
    base = loss(net, val)
    for name, (picks, damage) in out.items():
        for flat, d in zip(picks.tolist(), damage.tolist(), strict=True):
            model = baked(net)
            with torch.no_grad():
                model.get_submodule(name.rsplit(".", 1)[0]).weight.view(-1)[flat] = 0.0
            assert abs(d - (loss(model, val) - base)) < 1e-9, (name, flat)
