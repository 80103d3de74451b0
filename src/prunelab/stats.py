"""Statistics of the comparison, as library code with hand-worked tests.

Methods are compared in pairs on the same seeds (seed s: the same baseline, calibration
batches and data order for every method) and on the same test images, so each comparison
is paired twice over. The per-image difference of correctness D_si (seed s of n, image
i of N, values −1, 0, 1) is a crossed two-way table,

    D_si = μ + a_s + b_i + c_si,

a_s the procedure's own spread (baseline, calibration, data order), b_i the test set's
sampling noise (the same N images score every model), c_si their interaction. The mean
difference D̄ has variance σa²/n + σb²/N + σc²/(nN), estimated without bias by

    SE² = (MS_seed + MS_image − MS_resid) / (nN)

from the two-way ANOVA's mean squares (each noise source counted once: the per-seed and
per-image variances alone, added, count σc² twice), with Satterthwaite's degrees of
freedom for that sum (Satterthwaite 1946). An estimate below the interaction's own share
MS_resid/(nN) is raised to it (its df then (n − 1)(N − 1)). One seed: the image term
alone, σa not estimable.
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
        method, granularity = series.rsplit("-", 1)  # a method may hold "-": obs-noupdate
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


def crossed_se(d: np.ndarray) -> tuple[float, float]:
    """(SE of the grand mean, Satterthwaite df) of an n × N table of paired differences
    under the crossed random-effects model above."""
    n, images = d.shape
    grand = d.mean()
    ss_seed = images * float(((d.mean(1) - grand) ** 2).sum())
    ss_image = n * float(((d.mean(0) - grand) ** 2).sum())
    ss_resid = float(((d - grand) ** 2).sum()) - ss_seed - ss_image
    ms_image = ss_image / (images - 1)
    if n == 1:
        return math.sqrt(ms_image / images), float(images - 1)
    df_resid = (n - 1) * (images - 1)
    terms = [(ss_seed / (n - 1), n - 1), (ms_image, images - 1), (-ss_resid / df_resid, df_resid)]
    total = sum(ms for ms, _ in terms)
    floor = -terms[2][0]
    if total <= floor:  # sampling noise took the seed and image shares below zero
        return math.sqrt(floor / (n * images)), float(df_resid)
    df = total ** 2 / sum(ms ** 2 / k for ms, k in terms if ms != 0.0)
    return math.sqrt(total / (n * images)), df


def paired_difference(a: list[np.ndarray], b: list[np.ndarray],
                      confidence: float = 0.95) -> dict[str, Any]:
    """Accuracy of `a` minus `b` over paired seeds (lists in seed order, each the per-image
    correctness on the same test images): mean, SE and df (`crossed_se`), t-interval,
    two-sided p, per-seed McNemar p-values."""
    d = np.array([x.astype(float) - y for x, y in zip(a, b, strict=True)])
    n = len(d)
    se, df = crossed_se(d)
    mean = float(d.mean())
    q = float(st.t.ppf(0.5 + confidence / 2, df))
    p = 1.0 if se == 0 else float(2 * st.t.sf(abs(mean) / se, df))
    return {"diff": mean, "se": se, "lo": mean - q * se, "hi": mean + q * se, "df": df,
            "p": 0.0 if se == 0 and mean != 0 else p, "seeds": n,
            "mcnemar_p": [mcnemar(x, y)["p"] for x, y in zip(a, b, strict=True)]}


ALPHA = 0.05  # family-wise error rate per granularity (Holm)
RANDOM_MATCHED = "random-matched"  # label of a method's own matched random control


def verdicts(points: Iterable[Point], alpha: float = ALPHA,
             stage: str = "") -> list[dict[str, Any]]:
    """Per (granularity, ratio) cell: the method with the best mean *validation* accuracy
    after fine-tuning (chosen on the test images it is then compared on, its lead would be
    biased upward: the winner's curse), its paired comparison on test with every other
    method (and with its own matched random control, where the points carry one),
    Holm-adjusted within the granularity, the set of methods it is not significantly ahead
    of, and whether the cell is decided (that set is the best alone). Points need
    `test_correct` (`records.pack_correct`). `stage="_before"`: the same on the pruned
    models before fine-tuning (one-shot accuracy, where OBS's claim lies); a separate
    family, as it answers another question."""
    cells: dict[tuple[str, float], dict[str, dict[int, SweepPoint]]] = {}
    for p in feasible(points):
        if f"test_correct{stage}" not in p:  # no model before fine-tuning (gmp, movement)
            continue
        cells.setdefault((p["granularity"], p["ratio"]), {}).setdefault(
            p["method"], {})[p["seed"]] = p
    out: list[dict[str, Any]] = []
    for granularity in sorted({g for g, _ in cells}, key=lambda g: g != "weight"):
        family: list[tuple[dict[str, Any], str, dict[str, Any]]] = []
        for (gran, ratio), methods in sorted(cells.items()):
            if gran != granularity:
                continue
            v = _cell(granularity, ratio, methods, stage)
            family += [(v, other, c) for other, c in v["comparisons"].items()]
            out.append(v)
        for (_, _, c), p_adj in zip(family, holm([c["p"] for _, _, c in family]), strict=True):
            c["p_holm"] = p_adj
        for v in out:
            if v["granularity"] == granularity:
                others = [m for m in v["comparisons"] if m != RANDOM_MATCHED]
                v["ties"] = [v["best"]] + [m for m in others if not _ahead(
                    v["comparisons"][m], alpha)]
                v["decided"] = bool(others) and len(v["ties"]) == 1
    return out


def _ahead(c: Mapping[str, Any], alpha: float) -> bool:
    """The best is ahead of the other: positive on test and significant after Holm."""
    return bool(c["diff"] > 0 and c["p_holm"] < alpha)


def _cell(granularity: str, ratio: float, methods: dict[str, dict[int, SweepPoint]],
          stage: str) -> dict[str, Any]:
    def mean_acc(m: str) -> float:
        return statistics.fmean(float(p[f"test_accuracy{stage}"])  # type: ignore[literal-required]
                                for p in methods[m].values())

    def mean_val(m: str) -> float:
        return statistics.fmean(float(p[f"val_accuracy{stage}"])  # type: ignore[literal-required]
                                for p in methods[m].values())

    key = f"test_correct{stage}"

    best = max(methods, key=mean_val)
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
                [_correct(methods[best][s], key) for s in seeds],
                [_correct(methods[other][s], key) for s in seeds])
    if not stage and all("test_correct_matched_random" in p for p in methods[best].values()):
        seeds = sorted(methods[best])
        v["comparisons"][RANDOM_MATCHED] = paired_difference(
            [_correct(methods[best][s]) for s in seeds],
            [_correct(methods[best][s], "test_correct_matched_random") for s in seeds])
    return v


def _correct(point: Mapping[str, Any], key: str = "test_correct") -> np.ndarray:
    return unpack_correct(point[key], point["test_images"])
