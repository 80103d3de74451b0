"""Sweep points on real data: infeasible points are recorded, matched controls match."""

from __future__ import annotations

import torch

from prunelab.analysis.stats import summarize
from prunelab.models import ModelSpec, build_model
from prunelab.prune.granularity import GRANULARITIES
from prunelab.prune.procedure import calibration_batches, prune_once
from prunelab.study.sweep import sweep_point

from helpers import shipped_fit, shipped_prune


def test_a_point_that_would_empty_a_layer_is_recorded_not_raised(small_splits) -> None:
    train, val, test = small_splits
    torch.manual_seed(0)
    net = build_model(ModelSpec("lenet300", (2, 100)))
    with torch.no_grad():
        net.body[2].weight.mul_(1e-3)  # layer 0's two units: tiny incoming L1 norms
    # Global ranking without normalisation cuts 51 of 102 units: both of layer 0's first.
    s = shipped_prune("magnitude", "neuron", scope="global", normalize=False)
    splits = {"train": train, "val": val, "test": test}
    point = sweep_point(net, 0.9, splits, s, shipped_fit(epochs=1), 2, 0, False)
    assert "would cut every unit of layer0" in point["infeasible"]
    assert point["method"] == "magnitude" and point["ratio"] == 2
    assert summarize([point]) == []  # no feasible seed: no row to average


def test_a_scratch_control_whose_widths_cannot_be_cut_is_recorded_not_raised(
        small_splits) -> None:
    """The scratch control takes its widths from a neuron cut; under a global scope that
    cut can empty a layer (LeNet-300-100 at 16x with sweep.neuron_scope: global stopped
    the whole sweep). Its point is infeasible, with the reason, like a method's."""
    from prunelab.records import is_feasible
    from prunelab.study.controls import SCRATCH
    from prunelab.study.sweep import control_point

    train, val, test = small_splits
    torch.manual_seed(0)
    net = build_model(ModelSpec("lenet300", (2, 100)))
    with torch.no_grad():
        net.body[2].weight.mul_(1e-3)  # as above: the global cut takes layer 0's two units
    s = shipped_prune("magnitude", "neuron", scope="global", normalize=False)
    splits = {"train": train, "val": val, "test": test}
    fit = shipped_fit(epochs=1)
    point = control_point(SCRATCH, net, 0.9, splits, s, fit, fit, 2, 0)
    assert not is_feasible(point)
    assert "would cut every unit of layer0" in point["infeasible"]
    assert (point["method"], point["granularity"], point["ratio"], point["rounds"]) == (
        SCRATCH, "neuron", 2, 1)


def test_matched_random_control_has_the_criterion_s_allocation(trained_mlp, small_splits) -> None:
    train = small_splits[0]
    calib = calibration_batches(train, 2, 64, seed=0)
    s = shipped_prune("taylor", "weight", sparsity=0.9, prune_output_layer=True)
    pruned = prune_once(trained_mlp, calib, s)
    control = GRANULARITIES["weight"].matched_random(trained_mlp, pruned, seed=3)
    for name, mask in pruned.kept.items():
        weight = control.get_submodule(name.rsplit(".", 1)[0]).weight
        assert int((weight == 0).sum()) == int((~mask).sum())  # same count per layer
        assert not torch.equal(weight == 0, ~mask)  # other weights
    units = prune_once(trained_mlp, calib, shipped_prune("taylor", "neuron", sparsity=0.75))
    control = GRANULARITIES["neuron"].matched_random(trained_mlp, units, seed=3)
    assert control.spec == units.model.spec


def test_summary_counts_infeasible_seeds_and_averages_the_rest() -> None:
    feasible = {"method": "m", "granularity": "neuron", "ratio": 4, "seed": 0,
                **{k: 0.5 for k in ("sparsity", "compression_ratio", "flops",
                                    "effective_flops", "val_accuracy_before",
                                    "test_accuracy_before", "val_accuracy", "test_accuracy",
                                    "baseline_test_accuracy", "test_accuracy_drop")}}
    bad = {"method": "m", "granularity": "neuron", "ratio": 4, "seed": 1, "infeasible": "x"}
    (row,) = summarize([feasible, bad])
    assert row["seeds"] == 1 and row["infeasible"] == 1 and row["test_accuracy"] == 0.5


def test_a_point_with_its_matched_control_keeps_both_predictions(small_splits) -> None:
    from prunelab.records import unpack_correct

    train, val, test = small_splits
    torch.manual_seed(0)
    net = build_model("lenet300")  # two prunable layers: the control differs from random
    s = shipped_prune("taylor", "weight", calibration_batches=2)
    splits = {"train": train.take(600), "val": val, "test": test}
    point = sweep_point(net, 0.1, splits, s, shipped_fit(epochs=1), 8, 0, True)
    own = unpack_correct(point["test_correct"], point["test_images"])
    control = unpack_correct(point["test_correct_matched_random"], point["test_images"])
    assert own.mean() == point["test_accuracy"]
    assert control.mean() == point["test_accuracy_matched_random"]
    assert (own != control).any()  # another model, not the same one twice


def test_the_controls_are_the_baseline_fine_tuned_and_the_pruned_widths_from_scratch(
        trained_mlp, small_splits) -> None:
    """dense+ft is the baseline fine-tuned with the sweep's own settings and seed (the
    same model `controls.dense_finetuned` gives, nothing cut); scratch has the widths a
    4× neuron cut gives, and a fresh initialisation (it is not the cut model)."""
    from prunelab.prune.procedure import prune_model
    from prunelab.study.controls import dense_finetuned
    from prunelab.study.sweep import control_point, point_settings
    from prunelab.training import evaluate

    train, val, test = small_splits
    splits = {"train": train, "val": val, "test": test}
    ft, training = shipped_fit(epochs=1), shipped_fit(epochs=1, lr=0.05)
    s = shipped_prune("random", "neuron")
    dense = control_point("dense+ft", trained_mlp, 0.9, splits, s, ft, training, 1.0, 3)
    by_hand = dense_finetuned(trained_mlp, train, val, ft, 3)
    assert dense["test_accuracy"] == evaluate(by_hand, test).accuracy
    assert dense["sparsity"] == 0 and dense["compression_ratio"] == 1.0
    assert dense["granularity"] == "weight" and dense["test_images"] == len(test)
    scratch = control_point("scratch", trained_mlp, 0.9, splits, s, ft, training, 4.0, 3)
    cut = prune_model(trained_mlp, train, val, point_settings(s, 4.0, 3), ft, 3).model
    assert scratch["parameters_remaining"] == sum(p.numel() for p in cut.parameters())
    assert scratch["sparsity"] == 0.75 and scratch["granularity"] == "neuron"
    assert scratch["test_accuracy_drop"] == 0.9 - scratch["test_accuracy"]


def test_iterative_rounds_add_their_own_points_to_the_same_study(tmp_path) -> None:
    """sweep.iterative_rounds [3] keeps the sweep's study and every one-shot point's key,
    and queues one point per method that cuts before fine-tuning (10 of params.yaml's 12:
    not gmp, movement) × granularity × ratio × seed, each with 3 rounds: 10·2·5·5 = 500."""
    import copy

    import yaml

    from prunelab.config import parse_config
    from prunelab.study.sweep import points, study_name

    from helpers import ROOT

    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    more = copy.deepcopy(raw)
    more["sweep"]["iterative_rounds"] = [3]
    base, with_rounds = parse_config(raw), parse_config(more)
    files = {}
    for s in base.sweep.seeds:
        files[s] = tmp_path / f"{s}.safetensors"
        files[s].write_bytes(bytes([s]))  # a point's key names its baseline by content
    before = {k: {**p, **a} for k, p, a in points(base, files)}
    after = {k: {**p, **a} for k, p, a in points(with_rounds, files)}
    assert study_name(base) == study_name(with_rounds)
    assert set(before) < set(after) and all(after[k] == p for k, p in before.items())
    new = {k: p for k, p in after.items() if k not in before}
    assert len(new) == 10 * 2 * 5 * 5
    assert {p["rounds"] for p in new.values()} == {3}
    assert {p["rounds"] for p in before.values()} == {1}
    assert not {p["method"] for p in new.values()} & {"gmp", "movement"}
