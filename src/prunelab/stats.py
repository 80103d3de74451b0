"""Statistics of the comparison, as library code with hand-worked tests.

Methods are compared in pairs on the same seeds (seed s: the same baseline, calibration
batches and data order for every method) and on the same test images, so each comparison
is paired twice over. The difference of two methods' test accuracy after fine-tuning,
d̄ = mean over seeds of d_s, gets the standard error

    SE² = s²_d / n  +  var_i(e_i) / N,

s²_d the sample variance of the n per-seed differences (the procedure's own spread) and
e_i the per-image difference of correctness averaged over seeds (the test set's sampling
noise, which the seeds share: the same N images score every model). A t-interval with
n − 1 degrees of freedom follows (a normal one with a single seed). The second term
partly re-counts noise already in s²_d, so the interval errs on the wide side; a percentile
bootstrap over 3–5 seeds would err on the narrow side, which is why it is not used.
p-values are Holm–Bonferroni adjusted across the comparisons of one granularity; a cell is
"decided" only where every comparison of its best method is significant after adjustment.
McNemar's exact test per seed is reported beside (how many seeds separate the two alone).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from scipy import stats as st

from prunelab.records import (
    InfeasiblePoint,
    Point,
    SearchChoice,
    SweepPoint,
    feasible,
    is_feasible,
    unpack_correct,
)

# Per point, the quantities averaged over seeds (the rest are labels).
MEASURED = ("sparsity", "compression_ratio", "flops", "effective_flops",
            "val_accuracy_before", "test_accuracy_before", "val_accuracy", "test_accuracy",
            "baseline_test_accuracy", "test_accuracy_drop")
# The random control with each point's per-layer sparsity (`sweep.matched_random`).
MATCHED = ("test_accuracy_before_matched_random", "test_accuracy_matched_random")


def mean_sd(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0.0 for a single value, which has none)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarize(points: Iterable[Point]) -> list[dict[str, Any]]:
    """One row per (method, granularity, ratio): mean and sample sd over the seeds whose
    point was feasible (`infeasible` counts the others); the matched random control's
    accuracies where the points have them."""
    groups: dict[tuple[str, str, float], list[Point]] = {}
    for p in points:
        groups.setdefault((p["method"], p["granularity"], p["ratio"]), []).append(p)
    rows = []
    for (method, granularity, ratio), all_ps in sorted(groups.items()):
        ps: list[Mapping[str, Any]] = list(feasible(all_ps))  # read by column name below
        if not ps:
            continue
        row: dict[str, Any] = {"method": method, "granularity": granularity, "ratio": ratio,
                               "seeds": len(ps), "infeasible": len(all_ps) - len(ps)}
        for k in MEASURED + MATCHED:
            if all(k in p for p in ps):
                row[k], row[f"{k}_sd"] = mean_sd([float(p[k]) for p in ps])
        rows.append(row)
    return rows


def headline(rows: list[dict[str, Any]], quality: dict[str, Any],
             choices: dict[str, SearchChoice],
             finetuned: dict[str, Any], max_drop: float) -> dict[str, Any]:
    """A few numbers per method-granularity, for `dvc exp show`: the searched operating
    point, the highest sweep ratio whose mean test drop is within the allowed one, and the
    criterion's mean ρ with the true damage (over layers)."""
    out: dict[str, Any] = {}
    for series, choice in choices.items():
        method, granularity = series.split("-")
        ok = [r["ratio"] for r in rows if f"{r['method']}-{r['granularity']}" == series
              and r["test_accuracy_drop"] <= max_drop]
        layers = quality.get(method, {}).get(granularity, {})
        out[series] = {
            "searched_sparsity": choice.sparsity,
            "searched_test_accuracy": finetuned[series]["test_accuracy"],
            "max_ratio_within_drop": max(ok, default=1.0),
            "oracle_spearman": mean_sd([q["spearman"]["mean"] for q in layers.values()])[0]
            if layers else None}
    return out


def infeasible(points: Iterable[Point]) -> list[InfeasiblePoint]:
    """The points that could not be realised, with their reasons."""
    return [p for p in points if not is_feasible(p)]


def mean_sd_tree(trees: list[dict[str, Any]]) -> dict[str, Any]:
    """Nested dicts of numbers (one per seed, same shape) -> the same shape with each
    number replaced by {"mean": ..., "sd": ...} over the seeds."""
    first = trees[0]
    if not isinstance(first, dict):
        mean, sd = mean_sd([float(t) for t in trees])
        return {"mean": mean, "sd": sd}
    return {k: mean_sd_tree([t[k] for t in trees]) for k in first}


def holm(pvalues: list[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values, in the order given: the i-th smallest of m is
    multiplied by (m − i + 1), then made monotone and capped at 1."""
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    adjusted, running = [0.0] * len(pvalues), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(pvalues) - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def mcnemar(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """McNemar's exact test on paired correctness: b01 images only `b` gets right, b10 only
    `a`; under equal accuracy each discordant image is a fair coin (two-sided binomial)."""
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    n = only_a + only_b
    p = 1.0 if n == 0 else float(st.binomtest(only_a, n, 0.5).pvalue)
    return {"only_a": only_a, "only_b": only_b, "p": p}


def paired_difference(a: list[np.ndarray], b: list[np.ndarray],
                      confidence: float = 0.95) -> dict[str, Any]:
    """Accuracy of `a` minus `b` over paired seeds (lists in seed order, each the per-image
    correctness on the same test images): mean, SE, t-interval, two-sided p, per-seed
    McNemar p-values."""
    per_seed = np.array([x.mean() - y.mean() for x, y in zip(a, b, strict=True)])
    n, images = len(per_seed), len(a[0])
    per_image = np.mean([x.astype(float) - y for x, y in zip(a, b, strict=True)], axis=0)
    var_seeds = per_seed.var(ddof=1) / n if n > 1 else 0.0
    se = math.sqrt(var_seeds + per_image.var(ddof=1) / images)
    df = n - 1 if n > 1 else math.inf
    mean = float(per_seed.mean())
    q = float(st.t.ppf(0.5 + confidence / 2, df))
    p = 1.0 if se == 0 else float(2 * st.t.sf(abs(mean) / se, df))
    return {"diff": mean, "se": se, "lo": mean - q * se, "hi": mean + q * se, "df": df,
            "p": 0.0 if se == 0 and mean != 0 else p, "seeds": n,
            "mcnemar_p": [mcnemar(x, y)["p"] for x, y in zip(a, b, strict=True)]}


ALPHA = 0.05  # family-wise error rate per granularity (Holm)
RANDOM_MATCHED = "random-matched"  # label of a method's own matched random control


def verdicts(points: Iterable[Point], alpha: float = ALPHA) -> list[dict[str, Any]]:
    """Per (granularity, ratio) cell: the method with the best mean test accuracy after
    fine-tuning, its paired comparison with every other method (and with its own matched
    random control, where the points carry one), Holm-adjusted within the granularity, the
    set of methods that cannot be told apart from the best, and whether the cell is decided
    (that set is the best alone). Points need `test_correct` (`records.pack_correct`)."""
    cells: dict[tuple[str, float], dict[str, dict[int, SweepPoint]]] = {}
    for p in feasible(points):
        cells.setdefault((p["granularity"], p["ratio"]), {}).setdefault(
            p["method"], {})[p["seed"]] = p
    out: list[dict[str, Any]] = []
    for granularity in sorted({g for g, _ in cells}, key=lambda g: g != "weight"):
        family: list[tuple[dict[str, Any], str, dict[str, Any]]] = []
        for (gran, ratio), methods in sorted(cells.items()):
            if gran != granularity:
                continue
            v = _cell(granularity, ratio, methods)
            family += [(v, other, c) for other, c in v["comparisons"].items()]
            out.append(v)
        for (_, _, c), p_adj in zip(family, holm([c["p"] for _, _, c in family]), strict=True):
            c["p_holm"] = p_adj
        for v in out:
            if v["granularity"] == granularity:
                others = [m for m in v["comparisons"] if m != RANDOM_MATCHED]
                v["ties"] = [v["best"]] + [m for m in others
                                           if v["comparisons"][m]["p_holm"] >= alpha]
                v["decided"] = bool(others) and len(v["ties"]) == 1
    return out


def _cell(granularity: str, ratio: float,
          methods: dict[str, dict[int, SweepPoint]]) -> dict[str, Any]:
    def mean_acc(m: str) -> float:
        return statistics.fmean(p["test_accuracy"] for p in methods[m].values())

    best = max(methods, key=mean_acc)
    by_method = {m: statistics.fmean(p["compression_ratio"] for p in ps.values())
                 for m, ps in methods.items()}
    v: dict[str, Any] = {
        "granularity": granularity, "ratio": ratio, "best": best, "best_mean": mean_acc(best),
        "seeds": len(methods[best]), "compression": statistics.fmean(by_method.values()),
        # Methods are compared at equal realised compression: the spread says how equal.
        "compression_spread": max(by_method.values()) / min(by_method.values()) - 1,
        "comparisons": {}}
    for other in sorted(methods):
        if other != best:
            seeds = sorted(set(methods[best]) & set(methods[other]))
            v["comparisons"][other] = paired_difference(
                [_correct(methods[best][s]) for s in seeds],
                [_correct(methods[other][s]) for s in seeds])
    if all("test_correct_matched_random" in p for p in methods[best].values()):
        seeds = sorted(methods[best])
        v["comparisons"][RANDOM_MATCHED] = paired_difference(
            [_correct(methods[best][s]) for s in seeds],
            [_correct(methods[best][s], "test_correct_matched_random") for s in seeds])
    return v


def _correct(point: Mapping[str, Any], key: str = "test_correct") -> np.ndarray:
    return unpack_correct(point[key], point["test_images"])
