"""The power estimate's check (`analysis.calibration`) on real sweep points of a slice of
MNIST: it reads validation only, tries every subset of the check's seeds, and a contrast
whose difference is exactly zero closes (equivalent) at every count."""

from __future__ import annotations

from itertools import combinations

import pytest

from prunelab.analysis.calibration import calibrate, on_validation, summary
from prunelab.analysis.contrasts import auc_weights
from prunelab.study.sweep import sweep_point

from helpers import shipped_fit, shipped_prune

RATIOS = [4.0, 16.0]
PILOT, CHECK = (0, 1), (2, 3, 4)


@pytest.fixture(scope="module")
def points(trained_mlp, small_splits) -> list:  # noqa: ANN001
    train, val, test = small_splits
    splits = {"train": train, "val": val, "test": test}
    fit = shipped_fit(epochs=1)
    return [sweep_point(trained_mlp, 0.9, splits, shipped_prune(m, "weight"), fit, r, s, False)
            for m in ("magnitude", "random") for r in RATIOS for s in PILOT + CHECK]


def _val_area(points: list, method: str, seed: int) -> float:
    w = auc_weights(RATIOS)
    return sum(w[p["ratio"]] * p["val_accuracy"] for p in points
               if p["method"] == method and p["seed"] == seed)


def test_the_check_reads_validation_and_tries_every_subset_of_its_seeds(points) -> None:
    pilot = [p for p in points if p["seed"] in PILOT]
    check = [p for p in points if p["seed"] in CHECK]
    rows = calibrate(pilot, check, ["magnitude", "random"], ["random"],
                     {"weight": RATIOS}, margin=0.005, alpha=0.05, power=0.8, sizes=[2, 3, 4])
    by = {(r["method"], r["other"]): r for r in rows}
    ahead = by[("magnitude", "random")]
    # The differences are of validation areas (the trapezoid over log2 ratio), per seed set.
    for name, seeds in (("pilot_diff", PILOT), ("check_diff", CHECK)):
        by_hand = sum(_val_area(points, "magnitude", s) - _val_area(points, "random", s)
                      for s in seeds) / len(seeds)
        assert ahead[name] == pytest.approx(100 * by_hand, abs=1e-9)
    # Magnitude keeps the slice's mlp far above random at 16x; every subset says so.
    assert ahead["check_diff"] > 1 and ahead["check_label"].startswith("ahead")
    # n = 4 is more than the check's 3 seeds: not tried; n = 2: its 3 subsets.
    assert set(ahead["closed"]) == {2, 3}
    pairs = len(list(combinations(CHECK, 2)))
    assert ahead["closed"][3] == 1.0 and ahead["closed"][2] in [k / pairs for k in range(4)]
    # A method against itself: the difference is 0 on every image, TOST closes it at once.
    same = by[("random", "random")]
    assert same["check_diff"] == 0 and same["check_label"] == "equivalent"
    assert same["predicted"] == 2 and same["closed"] == {2: 1.0, 3: 1.0}
    s = summary(rows, 0.8)
    assert s["contrasts"] == 2 and s["reachable"] + s["beyond"] == 2
    assert s["meeting_power"] <= s["reachable"]


def test_on_validation_puts_the_validation_split_in_the_test_set_s_place(points) -> None:
    swapped = on_validation(points[:1])[0]
    assert swapped["test_correct"] == points[0]["val_correct"]
    assert swapped["test_images"] == points[0]["val_images"] != points[0]["test_images"]
