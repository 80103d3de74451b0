"""Per cell (granularity × ratio), what the comparison can say, with one of four labels.

The best method of a cell is the one with the best mean *validation* accuracy (chosen on
the test images it is then compared on, its lead would be biased upward: the winner's
curse). It is compared on test with every other method, paired on seeds and images
(`stats.paired_difference`), twice: is it ahead (one-sided), and is it equivalent within
±margin (TOST). The hypotheses of one cell (its best against each of the k − 1 other
methods and each control, both tests) form one Holm family at α: a cell answers its own
question (which method is best here?), so a lead of many standard errors is not made open
by the ~200 tests of the other cells (issue 37). A cell's label is

- **decided**: ahead of every other method;
- **equivalent**: not ahead of any, but equivalent to every other (each within ±margin);
- **partly**: ahead of some, equivalent to some, open against the rest;
- **open**: neither ahead of nor equivalent to any.

An open comparison carries the seeds it would need for `power` at the margin, from the
same comparison on validation images (`stats.seeds_needed`). The controls are compared
with the best too, in the family, but are not methods a label speaks of: random pruning
with the best method's own allocation (`random-matched`), and after fine-tuning the
baseline fine-tuned alike (`dense+ft`, every cell) and the pruned widths trained from
scratch (`scratch`, neuron cells) of `prunelab.study.controls`.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from prunelab.analysis.stats import holm, paired_difference, seeds_needed, simultaneous
from prunelab.records import (
    CONTROLS,
    DENSE_FT,
    SCRATCH,
    Point,
    SweepPoint,
    feasible,
    unpack_correct,
)

RANDOM_MATCHED = "random-matched"  # label of a method's own matched random control
NOT_LABELLED = (RANDOM_MATCHED, *CONTROLS)  # compared with the best, not in its label
LABELS = ("decided", "equivalent", "partly", "open")


def correct(point: Mapping[str, Any], key: str) -> np.ndarray:
    """A point's per-image correctness (`key`: test_correct, val_correct_before, ...)."""
    split = "val" if key.startswith("val") else "test"
    return unpack_correct(point[key], point[f"{split}_images"])


def verdicts(points: Iterable[Point], margin: float, alpha: float, power: float,
             stage: str = "", assurance: float | None = None) -> list[dict[str, Any]]:
    """Every cell's verdict (see the module's docstring), weight cells first. `margin` is
    a fraction (0.005: half a percentage point). `stage="_before"`: the same on the cut
    models before fine-tuning (one-shot accuracy, where OBS's claim lies), each cell again
    its own family."""
    cells: dict[tuple[str, float], dict[str, dict[int, SweepPoint]]] = {}
    controls: dict[tuple[str, float | None], dict[int, SweepPoint]] = {}
    for p in feasible(points):
        if p["method"] in CONTROLS:  # compared with, never the best nor labelled
            where = None if p["method"] == DENSE_FT else p["ratio"]
            controls.setdefault((p["method"], where), {})[p["seed"]] = p
        elif f"test_correct{stage}" in p:  # not before fine-tuning for gmp, movement
            cells.setdefault((p["granularity"], p["ratio"]), {}).setdefault(
                p["method"], {})[p["seed"]] = p
    out: list[dict[str, Any]] = []
    for granularity in sorted({g for g, _ in cells}, key=lambda g: g != "weight"):
        mine = [_cell(g, ratio, methods, stage, margin, {
                    c: controls[(c, where)] for c, where in ((DENSE_FT, None), (SCRATCH, ratio))
                    if (c, where) in controls and (c == DENSE_FT or g == "neuron")})
                for (g, ratio), methods in sorted(cells.items()) if g == granularity]
        for v in mine:  # one Holm family per cell: its best against each other method
            family = list(v["comparisons"].values())
            tests = 2 * len(family)  # ahead and equivalent, per comparison
            adjusted = holm([c["p_ahead"] for c in family] + [c["p_equiv"] for c in family])
            for i, c in enumerate(family):
                c["p_ahead_holm"], c["p_equiv_holm"] = adjusted[i], adjusted[len(family) + i]
                c["lo_adj"], c["hi_adj"] = simultaneous(c, tests, alpha)
            v["family"] = tests
            _label(v, alpha, power, margin, tests, assurance)
        out += mine
    return out


def _label(v: dict[str, Any], alpha: float, power: float, margin: float,
           tests: int, assurance: float | None) -> None:
    for c in v["comparisons"].values():
        c["ahead"] = bool(c["diff"] > 0 and c["p_ahead_holm"] < alpha)
        c["equivalent"] = bool(not c["ahead"] and c["p_equiv_holm"] < alpha)
    others = {m: c for m, c in v["comparisons"].items() if m not in NOT_LABELLED}
    v["ahead"] = [m for m, c in others.items() if c["ahead"]]
    v["equivalent"] = [m for m, c in others.items() if c["equivalent"]]
    v["open"] = [m for m in others if m not in v["ahead"] + v["equivalent"]]
    v["label"] = ("open" if not others or len(v["open"]) == len(others) else
                  "decided" if len(v["ahead"]) == len(others) else
                  "equivalent" if len(v["equivalent"]) == len(others) else "partly")
    v["decided"] = v["label"] == "decided"
    for m in v["open"]:
        c = others[m]
        # Bonferroni's level per test: what Holm needs at worst, so the count is safe.
        c["seeds_needed"] = (seeds_needed(c["val_table"], c["test_images"], margin,
                                          alpha / tests, power, assurance=assurance)
                             if c.get("val_table") is not None else None)
    for c in v["comparisons"].values():
        c.pop("val_table", None)


def _cell(granularity: str, ratio: float, methods: dict[str, dict[int, SweepPoint]],
          stage: str, margin: float, controls: dict[str, dict[int, SweepPoint]]
          ) -> dict[str, Any]:
    def mean_of(m: str, key: str) -> float:
        return statistics.fmean(float(p[key]) for p in methods[m].values())  # type: ignore[literal-required]

    best = max(methods, key=lambda m: mean_of(m, f"val_accuracy{stage}"))
    by_method = {m: statistics.fmean(p["compression_ratio"] for p in ps.values())
                 for m, ps in methods.items()}
    v: dict[str, Any] = {
        "granularity": granularity, "ratio": ratio, "best": best,
        "best_mean": mean_of(best, f"test_accuracy{stage}"), "seeds": len(methods[best]),
        "compression": statistics.fmean(by_method.values()),
        # Methods are compared at equal realised compression: the spread says how equal.
        "compression_spread": max(by_method.values()) / min(by_method.values()) - 1,
        "comparisons": {}}
    pairs = {o: (methods[best], methods[o], "") for o in sorted(methods) if o != best}
    if not stage and all("test_correct_matched_random" in p for p in methods[best].values()):
        pairs[RANDOM_MATCHED] = (methods[best], methods[best], "_matched_random")
    # The controls after fine-tuning (each is a fine-tuned or fully trained model; before
    # fine-tuning, dense+ft would be the baseline itself and scratch has no "before").
    if not stage:
        pairs |= {c: (methods[best], ps, "") for c, ps in controls.items()}
    for other, (mine, theirs, suffix) in pairs.items():
        seeds = sorted(set(mine) & set(theirs))
        theirs_at = suffix or stage
        if not seeds:
            continue
        c = paired_difference([correct(mine[s], f"test_correct{stage}") for s in seeds],
                              [correct(theirs[s], f"test_correct{theirs_at}")
                               for s in seeds], margin)
        c["test_images"] = int(mine[seeds[0]]["test_images"])
        val_key, other_val = f"val_correct{stage}", f"val_correct{theirs_at}"
        if len(seeds) > 1 and all(val_key in mine[s] and other_val in theirs[s] for s in seeds):
            c["val_table"] = np.array([correct(mine[s], val_key).astype(float)
                                       - correct(theirs[s], other_val) for s in seeds])
        v["comparisons"][other] = c
    return v
