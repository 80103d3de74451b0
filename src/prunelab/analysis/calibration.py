"""Does the power estimate keep its promise? A check of `stats.seeds_needed` on validation
images only (issue 37, item 4): the seeds a primary contrast is said to need, estimated from
one set of seeds (the pilot), against how often that contrast closes at that many seeds of
another set (the check) — each seed a new baseline, calibration and data order.

Both sets are read on the validation split, which takes the test set's place in every
formula (`on_validation`): the predicted count is for a design on the validation images, and
"closes" is the label the report would give on them — anything but "open" (the contrast is
shown ahead, behind or equivalent after Holm in its question's family at that granularity).
Among a check of k seeds, the contrast is run on every subset of n of them (all k-choose-n),
so the closure rate at n is the fraction of n-seed designs drawn from these k seeds that
close. The estimator promises `power` at a true difference of exactly ±margin (the one-sided
test) or 0 (TOST); a contrast whose true difference lies between (about half the margin)
closes less often at any count, and the rate is shown beside its difference so a reader can
tell those apart from a miscalibration. No test image is read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from itertools import combinations
from typing import Any

from prunelab.analysis.contrasts import primary
from prunelab.records import Point, is_feasible

# The label of a contrast that neither test settled (`contrasts.ANSWERS`).
OPEN = "open"


def on_validation(points: Iterable[Point]) -> list[Point]:
    """The points with their validation correctness and image count in the test set's
    place, so that the report's own analysis (`contrasts.primary`) reads validation only."""
    return [{**p, "test_correct": p["val_correct"], "test_images": p["val_images"]}
            if is_feasible(p) else p for p in points]


def _contrast_key(c: Mapping[str, Any]) -> tuple[str, str, str]:
    return c["granularity"], c["method"], c["other"]


def calibrate(pilot: Iterable[Point], check: Iterable[Point], criteria: Sequence[str],
              references: Sequence[str], ratios: Mapping[str, Sequence[float]],
              margin: float, alpha: float, power: float, sizes: Sequence[int],
              assurance: float | None = None) -> list[dict[str, Any]]:
    """One row per primary contrast of the question (`criteria` × `references`, per
    granularity): `predicted`, the seeds `seeds_needed` asks on the pilot's validation
    (None: more than it searches); `pilot_diff` and `check_diff` (pp, all of each set's
    seeds); `check_label`, the label on all check seeds; and `closed[n]`, the fraction of the
    check's n-seed subsets, for each n of `sizes` up to its seed count, whose label is not
    open. `assurance`: the estimator's (`stats.seeds_needed`), for the prediction."""
    pilot, check = on_validation(pilot), on_validation(check)
    rows = {_contrast_key(c): {"granularity": c["granularity"], "method": c["method"],
                               "other": c["other"], "predicted": c["seeds_needed"],
                               "pilot_seeds": c["seeds"], "pilot_diff": 100 * c["diff"]}
            for c in primary(pilot, criteria, references, ratios, margin, alpha, power,
                             assurance)}
    seeds = sorted({p["seed"] for p in check})
    for c in primary(check, criteria, references, ratios, margin, alpha, power):
        if (row := rows.get(_contrast_key(c))) is not None:
            row.update(check_seeds=c["seeds"], check_diff=100 * c["diff"],
                       check_label=c["answer"], closed={})
    for n in (n for n in sizes if 2 <= n <= len(seeds)):
        closes: dict[tuple[str, str, str], list[bool]] = {}
        for subset in combinations(seeds, n):
            chosen = [p for p in check if p["seed"] in subset]
            for c in primary(chosen, criteria, references, ratios, margin, alpha, power):
                closes.setdefault(_contrast_key(c), []).append(c["answer"] != OPEN)
        for k, got in closes.items():
            if k in rows and "closed" in rows[k]:
                rows[k]["closed"][n] = sum(got) / len(got)
    return [r for r in rows.values() if "closed" in r]


def summary(rows: Sequence[Mapping[str, Any]], power: float) -> dict[str, Any]:
    """Over the contrasts whose predicted count the check can reach: how many there are,
    the mean closure rate at the predicted count, and how many close at least `power` of
    the time there; and how many were predicted beyond the check's seeds."""
    reachable = [r for r in rows if r["predicted"] is not None and r["predicted"] in r["closed"]]
    at = [r["closed"][r["predicted"]] for r in reachable]
    return {"contrasts": len(rows), "reachable": len(reachable),
            "beyond": len(rows) - len(reachable),
            "mean_closed_at_predicted": sum(at) / len(at) if at else None,
            "meeting_power": sum(a >= power for a in at)}
