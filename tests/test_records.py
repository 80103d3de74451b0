"""The records stages hand each other: written and read through one function each, and a
file of another version refused with the fix, before any work."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from prunelab.errors import PrunelabError
from prunelab.records import (
    SearchChoice,
    as_point,
    feasible,
    read_choice,
    read_points,
    write_choice,
    write_points,
)

CHOICE = SearchChoice(study="mlp-magnitude-weight-0a1b2c3d", trial=5, trial_key="grid-5",
                      sparsity=0.93, lr=None, finetune_seed=5, val_accuracy=0.975,
                      realised_sparsity=0.9299, baseline_val_accuracy=0.979,
                      within_allowed_drop=True, trials_complete=11, trials_pruned=0,
                      trials_failed=0, storage="studies/optuna-journal.log")


def test_a_choice_reads_back_as_written(tmp_path: Path) -> None:
    write_choice(tmp_path / "c.json", CHOICE)
    assert read_choice(tmp_path / "c.json") == CHOICE
    write_choice(tmp_path / "lr.json", replace(CHOICE, lr=0.02))
    assert read_choice(tmp_path / "lr.json").lr == 0.02


def test_a_choice_of_another_version_is_refused_with_the_fix(tmp_path: Path) -> None:
    write_choice(tmp_path / "c.json", CHOICE)
    data = json.loads((tmp_path / "c.json").read_text())
    del data["finetune_seed"]
    (tmp_path / "c.json").write_text(json.dumps(data))
    with pytest.raises(PrunelabError, match=r"missing \['finetune_seed'\].*dvc repro search"):
        read_choice(tmp_path / "c.json")


def test_points_read_back_as_written_and_a_misspelt_key_is_refused(
    tmp_path: Path, small_splits, trained_mlp
) -> None:
    """A real point and an infeasible one, through the sweep's writer and the report's
    reader; then a file whose point has a misspelt key."""
    from prunelab.study.sweep import sweep_point

    from helpers import shipped_fit, shipped_prune

    train, val, test = small_splits
    splits = {"train": train.take(640), "val": val, "test": test}
    ft = shipped_fit(epochs=1)
    good = sweep_point(trained_mlp, 0.9, splits, shipped_prune("magnitude", "weight"), ft,
                       4.0, 0, False)
    bad = sweep_point(trained_mlp, 0.9, splits,
                      shipped_prune("magnitude", "neuron", scope="layer"), ft, 1e6, 0, False)
    write_points(tmp_path / "p.json", "magnitude", "weight", [good, bad])
    back = read_points(tmp_path / "p.json")
    assert back == [good, bad] and feasible(back) == [good]
    assert "infeasible" in bad and "test_accuracy" in good

    data = json.loads((tmp_path / "p.json").read_text())
    data["points"][0]["test_acuracy"] = data["points"][0].pop("test_accuracy")
    (tmp_path / "p.json").write_text(json.dumps(data))
    with pytest.raises(PrunelabError, match=r"point 0.*missing \['test_accuracy'\], "
                                            r"unknown \['test_acuracy'\]"):
        read_points(tmp_path / "p.json")
    with pytest.raises(PrunelabError, match="not a sweep point"):
        as_point({"method": "magnitude"}, "here")
