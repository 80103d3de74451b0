"""The oracle (true damage of removing one unit or weight) and the agreement measures."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from prunelab.models import baked
from prunelab.oracle.single import agreement
from prunelab.oracle.truth import unit_damage, weight_damage
from prunelab.prune.surgery import remove_units


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


def test_surgeon_damage_is_the_loss_after_removing_the_weight_and_updating_its_row(
        small_splits) -> None:
    """On a conv net (the row is a filter): for each sampled weight, the model with that
    weight removed and OBS's update δ = −(w_q/[H⁻¹]_qq)·H⁻¹[:, q] applied to its filter,
    built by hand from the same H, has exactly the loss change `surgeon_damage` reports;
    the prediction is ½·w_q²/[H⁻¹]_qq. Without the update the damage differs (it is
    `weight_damage`'s)."""
    from prunelab.criteria.second_order import layer_hessians
    from prunelab.models import ModelSpec, build_model
    from prunelab.oracle.single import surgeon_damage
    from prunelab.prune.procedure import calibration_batches

    torch.manual_seed(0)
    net = build_model(ModelSpec("lenet5", (4, 6, 8)))
    train, val = small_splits[0], small_splits[1].take(50)
    calib = calibration_batches(train, 2, 64, seed=0)
    plain = weight_damage(net, val, ["body.4.weight"], 3, seed=0)
    ((predicted, damage),) = surgeon_damage(net, val, calib, plain).values()
    h_inv = torch.linalg.inv(layer_hessians(net, calib)["body.4"])
    base = loss(net, val)
    for i, flat in enumerate(plain["body.4.weight"][0].tolist()):
        model = baked(net)
        with torch.no_grad():
            weight = model.get_submodule("body.4").weight
            rows = weight.view(len(weight), -1)  # one row per filter
            o, q = divmod(flat, rows.shape[1])
            w_q = float(rows[o, q])
            assert float(predicted[i]) == pytest.approx(0.5 * w_q ** 2 / float(h_inv[q, q]))
            rows[o] -= (w_q / h_inv[q, q] * h_inv[:, q]).float()
            assert float(rows[o, q]) == pytest.approx(0.0, abs=1e-6)
        assert abs(float(damage[i]) - (loss(model, val) - base)) < 1e-6, flat
        assert float(damage[i]) != pytest.approx(float(plain["body.4.weight"][1][i]))


def test_greedy_oracle_steps_are_the_best_single_removals_given_the_earlier_ones(
        trained_mlp, small_splits) -> None:
    """Brute force on the mlp's 128 units: the greedy's first unit is the one whose removal
    alone costs least (`unit_damage`'s argmin); its second, the best partner of the first
    among all 127 others. A criterion whose scores rank exactly the greedy order has
    precision@k 1 and no gap; its set's accuracy is the one `set_loss` gives."""
    from prunelab.oracle.unit_sets import as_sets, bottom_k, greedy_order, set_loss, set_quality

    val = small_splits[1].take(200)
    order = greedy_order(trained_mlp, val, 2)
    (damage,) = unit_damage(trained_mlp, val)
    assert order[0] == (0, int(damage.argmin()))
    net = baked(trained_mlp).double().eval()
    pairs = {k: set_loss(net, val, [{order[0][1], k}])[0] for k in range(128)
             if k != order[0][1]}
    assert order[1] == (0, min(pairs, key=pairs.__getitem__))
    # Scores that rank units in the greedy's own order (first removed lowest).
    full = greedy_order(trained_mlp, val, 96)
    rank = torch.full((128,), 1000.0)
    for i, (_, u) in enumerate(full):
        rank[u] = float(i)
    assert bottom_k([rank], [64]) == as_sets(full, 64, 1)
    out = set_quality(trained_mlp, val, val, {"oracle-like": [rank]}, [2, 4])
    assert out["oracle-like"]["r2"]["precision_at_k"] == 1.0
    assert out["oracle-like"]["r4"]["loss_gap"] == 0.0
    assert out["greedy"]["r2"]["accuracy"] == set_loss(net, val, as_sets(full, 64, 1))[1]


def test_greedy_oracle_on_two_hidden_layers_matches_brute_force(small_splits) -> None:
    """A 784-30-20-10 net (two hidden layers, so the first layer's candidates take the
    rank-one path through the second): each of the greedy's first two removals leaves the
    lowest loss among every (layer, unit) left, by `set_loss` of the whole network."""
    from prunelab.models import ModelSpec, build_model
    from prunelab.oracle.unit_sets import greedy_order, set_loss

    val = small_splits[1].take(200)
    torch.manual_seed(0)
    model = build_model(ModelSpec("lenet300", (30, 20)))
    net = baked(model).double().eval()
    order = greedy_order(model, val, 2)
    removed: list[set[int]] = [set(), set()]
    for layer, unit in order:
        losses = {(li, k): set_loss(net, val, [r | {k} if i == li else r
                                               for i, r in enumerate(removed)])[0]
                  for li, width in enumerate((30, 20)) for k in range(width)
                  if k not in removed[li]}
        assert losses[(layer, unit)] == pytest.approx(min(losses.values()), abs=1e-12)
        removed[layer].add(unit)


def test_greedy_oracle_against_every_subset_of_a_six_unit_net(small_splits) -> None:
    """A 784-6-10 mlp trained one epoch: for k = 1, 2, 3 the greedy's set of k against
    all C(6, k) subsets by brute force (`set_loss`). Its first removal is the best single
    one, each later removal the best addition to its set so far, and here its sets are
    the best of all subsets (greedy need not be optimal: this net shows it is at k ≤ 3)."""
    from itertools import combinations

    from prunelab.models import ModelSpec, build_model
    from prunelab.oracle.unit_sets import greedy_order, set_loss
    from prunelab.training import fit, seed_everything

    from helpers import shipped_fit

    train, val, _ = small_splits
    seed_everything(0)
    model = build_model(ModelSpec("mlp", (6,)))
    fit(model, train, val, shipped_fit(lr=0.05, epochs=1, batch_size=64), seed=0)
    held = val.take(300)
    net = baked(model).double().eval()
    order = [u for _, u in greedy_order(model, held, 3)]
    for k in (1, 2, 3):
        every = {s: set_loss(net, held, [set(s)])[0] for s in combinations(range(6), k)}
        grown = {s: v for s, v in every.items() if set(order[: k - 1]) <= set(s)}
        assert every[tuple(sorted(order[:k]))] == min(grown.values())
        assert every[tuple(sorted(order[:k]))] == min(every.values())


def test_the_greedy_says_each_step_and_a_seed_s_line_comes_every_few_seconds(
    trained_mlp, small_splits, capsys: pytest.CaptureFixture[str]
) -> None:
    """The oracle stage once said nothing for a seed's 3-5 minutes: the greedy tells each
    step, and the stage says where a seed is at most every `every_s` seconds."""
    from prunelab.oracle.unit_sets import greedy_order
    from prunelab.stages.oracle import SeedTicker

    val = small_splits[1].take(100)
    heard: list[str] = []
    order = greedy_order(trained_mlp, val, 3, heard.append)
    assert heard == [f"greedy unit step {i} of 3" for i in range(3)]
    assert order == greedy_order(trained_mlp, val, 3)  # listening changes nothing
    SeedTicker(7, every_s=3600)("greedy unit step 1 of 3")
    assert capsys.readouterr().out == ""
    SeedTicker(7, every_s=0)("greedy unit step 1 of 3")
    assert capsys.readouterr().out.startswith("oracle seed 7: greedy unit step 1 of 3, 0 s in")


def test_a_truth_file_is_the_same_bytes_in_every_process(trained_mlp, small_splits,
                                                         tmp_path) -> None:
    """models/truth is a DVC output: a rerun that measures the same truth must write the same
    bytes, or every fresh `make pipeline` leaves dvc.lock modified. It once held the
    measuring time, and three metadata entries, which safetensors writes in a Rust
    HashMap's order, new in each process: read back and written again in fresh processes,
    the file is the same bytes, and holds nothing but the truth."""
    import subprocess
    import sys

    from safetensors import safe_open

    from prunelab.oracle import truth

    names = ["body.2.weight", "body.4.weight"]
    known = truth.measure(trained_mlp, small_splits[1].take(100), names, 20, 0, [2])
    path = tmp_path / "0.safetensors"
    path.write_bytes(truth.to_bytes(known))
    with safe_open(str(path), "pt") as f:
        assert set(f.metadata()) == {"truth"}
        assert "seconds" not in f.metadata()["truth"]
    again = truth.load(path)
    assert again.reliability == known.reliability and again.unit_order == known.unit_order
    for a, b in zip(again.units, known.units, strict=True):
        assert torch.equal(a, b)
    script = ("import sys; from pathlib import Path; from prunelab.oracle import truth; "
              "sys.stdout.buffer.write(truth.to_bytes(truth.load(Path(sys.argv[1]))))")
    for _ in range(4):  # the old three entries kept their order in 1 process of 6
        out = subprocess.run([sys.executable, "-c", script, str(path)], check=True,
                             capture_output=True, timeout=120).stdout
        assert out == path.read_bytes()
