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
The same table on validation images gives the variance components a design needs
(`seeds_needed`): how many seeds a comparison would need for a given power, chosen without
reading a test outcome. The verdicts and contrasts built on these are in `verdicts` and
`contrasts`.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from scipy import stats as st

from prunelab.methods import key, parse
from prunelab.records import (
    DENSE_FT,
    InfeasiblePoint,
    Point,
    SearchChoice,
    feasible,
    is_feasible,
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
    accuracies where the points have them; the drop against dense+ft (the same seed's
    baseline fine-tuned alike) where the sweep ran the controls."""
    groups: dict[tuple[str, str, float], list[Point]] = {}
    points = list(points)
    dense = {p["seed"]: p["test_accuracy"] for p in feasible(points) if p["method"] == DENSE_FT}
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
        if ps and all(p["seed"] in dense for p in ps):  # the drop against dense+ft, paired
            row["drop_vs_dense_ft"], row["drop_vs_dense_ft_sd"] = mean_sd(
                [dense[p["seed"]] - float(p["test_accuracy"]) for p in ps])
        rows.append(row)
    return rows


def headline(rows: list[dict[str, Any]], choices: dict[str, SearchChoice],
             finetuned: dict[str, Any], max_drop: float, sets: dict[str, Any]
             ) -> dict[str, Any]:
    """A few numbers per method-granularity, for `dvc exp show`: the searched operating
    point, the highest sweep ratio whose mean test drop is within the allowed one, and
    the criterion's set-level gap to the greedy oracle (the greedy's held-out accuracy
    minus the criterion's, pp, mean over the ratios; negative where the criterion's sets
    keep more) where one was measured. Not the single-removal ρ: for single weights it
    is ~0.02 for every criterion (the removal's loss change is ±w·g, noise in sign), so
    it tells no criterion from another."""
    out: dict[str, Any] = {}
    for series, choice in choices.items():
        method, granularity = parse(series)
        ok = [r["ratio"] for r in rows if key(r["method"], r["granularity"]) == series
              and r["test_accuracy_drop"] <= max_drop]
        out[series] = {
            "searched_sparsity": choice.sparsity,
            "searched_test_accuracy": finetuned[series]["test_accuracy"],
            "max_ratio_within_drop": max(ok, default=1.0)}
        by_method = sets.get("sets" if granularity == "neuron" else "weight_sets", {})
        if method in by_method:
            out[series]["set_gap_pp"] = statistics.fmean(
                c["accuracy_gap_pp"]["mean"] for c in by_method[method].values())
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


def mean_squares(d: np.ndarray) -> tuple[float, float, float]:
    """(MS_seed, MS_image, MS_resid) of an n × N table (n ≥ 2) of paired differences."""
    n, images = d.shape
    grand = d.mean()
    ss_seed = images * float(((d.mean(1) - grand) ** 2).sum())
    ss_image = n * float(((d.mean(0) - grand) ** 2).sum())
    ss_resid = float(((d - grand) ** 2).sum()) - ss_seed - ss_image
    return ss_seed / (n - 1), ss_image / (images - 1), ss_resid / ((n - 1) * (images - 1))


def crossed_se(d: np.ndarray) -> tuple[float, float]:
    """(SE of the grand mean, Satterthwaite df) of an n × N table of paired differences
    under the crossed random-effects model above."""
    n, images = d.shape
    if n == 1:
        return math.sqrt(float(d.var(ddof=1)) / images), float(images - 1)
    ms_seed, ms_image, ms_resid = mean_squares(d)
    df_resid = (n - 1) * (images - 1)
    terms = [(ms_seed, n - 1), (ms_image, images - 1), (-ms_resid, df_resid)]
    total = sum(ms for ms, _ in terms)
    if total <= ms_resid:  # sampling noise took the seed and image shares below zero
        return math.sqrt(ms_resid / (n * images)), float(df_resid)
    df = total ** 2 / sum(ms ** 2 / k for ms, k in terms if ms != 0.0)
    return math.sqrt(total / (n * images)), df


def paired_difference(a: list[np.ndarray], b: list[np.ndarray], margin: float,
                      confidence: float = 0.95) -> dict[str, Any]:
    """`a` minus `b` over paired seeds (lists in seed order, each a per-image score on the
    same images: correctness, or a curve's area): mean, SE and df (`crossed_se`), a
    t-interval at `confidence`, and three p-values — two-sided, one-sided for `a` ahead
    (`p_ahead`), and TOST's for equivalence within ±`margin` (`p_equiv`; Schuirmann 1987:
    the larger of the one-sided p-values of "below −margin" and "above +margin")."""
    d = np.array([x.astype(float) - y for x, y in zip(a, b, strict=True)])
    se, df = crossed_se(d)
    mean = float(d.mean())
    q = float(st.t.ppf(0.5 + confidence / 2, df))

    def above(x: float) -> float:  # one-sided p of "the true difference is at most x"
        return float(st.t.sf((mean - x) / se, df)) if se > 0 else float(mean <= x)

    return {"diff": mean, "se": se, "df": df, "lo": mean - q * se, "hi": mean + q * se,
            "p": min(1.0, 2 * min(above(0.0), 1 - above(0.0))) if se > 0 else float(mean == 0),
            "p_ahead": above(0.0), "p_behind": 1 - above(0.0) if se > 0 else float(mean >= 0),
            "p_equiv": max(above(-margin), 1 - above(margin) if se > 0 else float(mean >= margin)),
            "seeds": len(d)}


def simultaneous(c: Mapping[str, Any], tests: int, alpha: float) -> tuple[float, float]:
    """The interval of a comparison adjusted for `tests` one-sided tests in its family
    (Bonferroni: two-sided at 1 − 2α/tests, so its lower end is the one-sided bound at
    α/tests). It excludes 0 only where Bonferroni rejects; Holm, uniformly more powerful,
    can reject where it touches 0."""
    q = float(st.t.ppf(1 - alpha / tests, c["df"])) if c["se"] > 0 else 0.0
    return c["diff"] - q * c["se"], c["diff"] + q * c["se"]


def seeds_needed(d_val: np.ndarray, test_images: int, margin: float, alpha: float,
                 power: float, most: int = 1000, assurance: float | None = None) -> int | None:
    """The fewest seeds at which a comparison on `test_images` images would have `power`
    both to detect a true difference of `margin` in a one-sided t-test at level `alpha` and
    to show equivalence within ±`margin` by TOST at a true difference of 0, whichever needs
    more: TOST rejects only if both its one-sided tests do, so at δ = 0 its power is
    2·P(t > t₁₋α − m/SE) − 1, which asks margin ≥ (t₁₋α + t₍₁₊power₎/₂)·SE(n) — more than the
    one-sided test's (t₁₋α + t_power)·SE(n). SE(n)² = σa²/n + σb²/N + σc²/(nN), with
    Satterthwaite's df for n seeds, the variance components estimated from `d_val`, the
    same table on validation images (never test: the design is not chosen on test
    outcomes). With few seeds the df are few and the t quantiles large, which the normal
    approximation would hide.

    `assurance`: plan on the upper confidence limit of the pilot's seed mean square at
    that level (Browne 1995, "On the use of a pilot sample for sample size determination"),
    not its point estimate: from 5 seeds the seed variance is known within a factor of
    several, often estimated as 0, and a design sized on the estimate falls short about
    half the time (scripts/power_calibration.py). None: the point estimate.
    None returned: no count up to `most` reaches it (the test set's own noise σb²/N leaves
    no room)."""
    n0, n_val = d_val.shape
    if n0 < 2:
        raise ValueError("variance components need at least 2 seeds")
    ms_seed, ms_image, ms_resid = mean_squares(d_val)
    if assurance is not None:  # χ² limit of a mean square on n0 − 1 df
        ms_seed *= (n0 - 1) / float(st.chi2.ppf(1 - assurance, n0 - 1))
    seed_var = max(0.0, (ms_seed - ms_resid) / n_val)  # σa²
    image_var = max(0.0, (ms_image - ms_resid) / n0)  # σb²
    for n in range(2, most + 1):
        # The mean squares n seeds would give, in expectation, and their crossed SE.
        m_seed, m_image = test_images * seed_var + ms_resid, n * image_var + ms_resid
        total = m_seed + m_image - ms_resid
        if total <= 0:  # no variance at all: two seeds already tell
            return n
        df = total ** 2 / (m_seed ** 2 / (n - 1) + m_image ** 2 / (test_images - 1)
                           + ms_resid ** 2 / ((n - 1) * (test_images - 1)))
        quantiles = float(st.t.ppf(1 - alpha, df) + st.t.ppf((1 + power) / 2, df))
        if margin >= quantiles * math.sqrt(total / (n * test_images)):
            return n
    return None
