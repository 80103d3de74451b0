"""Published results to put ours beside, and the check of ours against them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from scipy.stats import t

from prunelab.analysis.stats import crossed_se, mean_sd, mean_squares
from prunelab.records import Point, feasible, unpack_correct

# Published results to put ours beside: (baseline error %, pruned error %, compression ×).
# Han et al. 2015, "Learning both Weights and Connections", Table 1 (iterative magnitude
# pruning with retraining); Lee et al. 2019, "SNIP", Table 2 (one-shot at initialisation).
PAPERS: dict[str, list[dict[str, Any]]] = {
    "lenet300": [
        {"paper": "Han et al. 2015", "kind": "the same procedure", "base_error": 1.64,
         "error": 1.59, "ratio": 12.0},
        {"paper": "Lee et al. 2019 (SNIP)", "kind": "other procedure",
         "note": "prunes at initialisation, a different procedure", "base_error": None,
         "error": 1.6, "ratio": 20.0},
    ],
    "lenet5": [
        {"paper": "Han et al. 2015", "kind": "the same procedure", "base_error": 0.80,
         "error": 0.77, "ratio": 12.0},
        {"paper": "Lee et al. 2019 (SNIP)", "kind": "other procedure",
         "note": "prunes at initialisation, a different procedure", "base_error": None,
         "error": 0.8, "ratio": 50.0},
    ],
}
HAN_TOLERANCE_PP = 0.15


# A run "matches" a published ratio when its realised compression is at least the paper's
# (Han: "the same or a higher compression") and, for SNIP, at most this factor above it.
MATCH_ABOVE = 1.25


# Lee et al. 2019, "SNIP", Table 1 (LeNet-300-100, pruned at initialisation, every layer's
# weights): reference 1.7 % error; κ̄ = 95 % (20× of the weights) 1.6 %, 98 % (50×) 2.4 %.
# `at` names the run's own key for that sparsity: the table gives sparsity of the weights,
# not compression of all parameters, so it is matched by what was asked, not realised.
SNIP_TABLE1: list[dict[str, Any]] = [
    {"paper": "Lee et al. 2019 (SNIP), Table 1", "kind": "the same procedure",
     "base_error": 1.7, "error": error, "ratio": ratio, "at": f"{ratio:g}"}
    for ratio, error in ((20.0, 1.6), (50.0, 2.4))]


def han_judgement(model: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Our magnitude runs beside each published result for `model` (`PAPERS`), judged as
    `judgement` does."""
    return judgement(PAPERS.get(model, []), rows)


def judgement(papers: list[dict[str, Any]], rows: list[dict[str, Any]]
              ) -> list[dict[str, Any]]:
    """Our runs beside each published result of `papers`, judged two ways.

    `rows`: one per seed, {"seed", "base_test_error", "ratios": {ratio: {"compression_ratio",
    "test_error"}}} (errors as fractions), and where each image's outcome was kept,
    "base_test_correct" and each ratio's "test_correct" (`records.pack_correct`) with
    "test_images". (1) Absolute: our mean pruned error against theirs (Han: within
    HAN_TOLERANCE_PP). (2) Change: pruned error − own baseline error, its mean with a 95 %
    interval. With each image's outcome, the interval counts the test set's noise as the
    comparison does (`stats.crossed_se` over seeds × images), and the verdict against the
    paper's change also counts their run's own noise: one run's change on the same N
    images varies by σa² + (σb² + σc²)/N, estimated from our seeds; "worse"/"better" than
    theirs only where the interval of ours − theirs excludes 0. Without them, a t-interval
    over seeds and no verdict (`change_verdict` "—").
    """
    out = []
    for ref in papers:
        check: dict[str, Any] = {**ref, "seeds": len(rows)}
        match = _matching_ratio(rows, ref)
        if match is None:
            out.append({**check, "match": None})
            continue
        base = [100 * r["base_test_error"] for r in rows]
        pruned = [100 * r["ratios"][match]["test_error"] for r in rows]
        check.update(match=match, our_ratio=mean_sd([r["ratios"][match]["compression_ratio"]
                                                       for r in rows])[0],
                     our_base_error=mean_sd(base), our_error=mean_sd(pruned))
        table = _change_table(rows, match)
        if table is None:
            change = [p - b for p, b in zip(pruned, base, strict=True)]
            mean, sd = mean_sd(change)
            se, df = sd / len(change) ** 0.5, float(len(change) - 1)
        else:
            se, df = crossed_se(table)
            mean, se = 100 * float(table.mean()), 100 * se
        half = float(t.ppf(0.975, df)) * se if len(rows) > 1 else float("nan")
        check["our_change"] = (mean, mean - half, mean + half)
        if ref["base_error"] is not None:
            theirs = ref["error"] - ref["base_error"]
            check["their_change"] = theirs
            check["within_tolerance"] = bool(check["our_error"][0]
                                             <= ref["error"] + HAN_TOLERANCE_PP)
            if table is not None and len(rows) > 1:
                check.update(_against_theirs(table, mean - theirs, se, df))
        out.append(check)
    return out


def _change_table(rows: list[dict[str, Any]], match: str) -> np.ndarray | None:
    """Seeds × images: pruned wrong − baseline wrong (−1, 0, 1), or None without them."""
    if not all("base_test_correct" in r and "test_correct" in r["ratios"][match]
               for r in rows):
        return None
    return np.array([unpack_correct(r["base_test_correct"], r["test_images"]).astype(float)
                     - unpack_correct(r["ratios"][match]["test_correct"], r["test_images"])
                     for r in rows])


def _against_theirs(table: np.ndarray, diff: float, se: float, df: float) -> dict[str, Any]:
    """Ours − theirs (pp) with a 95 % interval counting their single run's noise: SE² of
    one run's change = σa² + (within-seed variance over images)/N from our table, added to
    ours; Welch–Satterthwaite's df, their share on our n − 1 seeds' df."""
    n, images = table.shape
    ms_seed, _, ms_resid = mean_squares(table)
    theirs_var = 100 ** 2 * (max(0.0, (ms_seed - ms_resid) / images)
                             + float(table.var(axis=1, ddof=1).mean()) / images)
    total = se ** 2 + theirs_var
    df_diff = total ** 2 / (se ** 4 / df + theirs_var ** 2 / (n - 1))
    half = float(t.ppf(0.975, df_diff)) * total ** 0.5
    verdict = ("worse than theirs" if diff - half > 0 else
               "better than theirs" if diff + half < 0 else "consistent with theirs")
    return {"vs_theirs": (diff, diff - half, diff + half), "vs_theirs_se": total ** 0.5,
            "vs_theirs_df": df_diff, "change_verdict": verdict}


def _matching_ratio(rows: list[dict[str, Any]], ref: dict[str, Any]) -> str | None:
    if not rows:  # no magnitude-weight run at all (e.g. a neuron-only experiment)
        return None
    if "at" in ref:  # matched by the run's own key (SNIP_TABLE1)
        return ref["at"] if ref["at"] in rows[0]["ratios"] else None

    def realised(ratio: str) -> float:
        return mean_sd([r["ratios"][ratio]["compression_ratio"] for r in rows])[0]

    ours = sorted(rows[0]["ratios"], key=realised)
    cap = MATCH_ABOVE if ref["kind"] == "other procedure" else float("inf")
    return next((k for k in ours if ref["ratio"] <= realised(k) <= cap * ref["ratio"]), None)


def rows_from_points(points: Iterable[Point]) -> list[dict[str, Any]]:
    """The sweep's magnitude-weight points as `han_judgement` rows, one per seed."""
    rows: dict[int, dict[str, Any]] = {}
    for p in feasible(points):
        if p["method"] == "magnitude" and p["granularity"] == "weight":
            row = rows.setdefault(p["seed"], {"seed": p["seed"], "ratios": {},
                                              "base_test_error": 1 - p["baseline_test_accuracy"]})
            row["ratios"][f"{p['ratio']:g}"] = {"compression_ratio": p["compression_ratio"],
                                                "test_error": 1 - p["test_accuracy"]}
    return [rows[s] for s in sorted(rows)]
