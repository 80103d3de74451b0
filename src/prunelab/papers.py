"""Published results to put ours beside, and the check of ours against them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from scipy.stats import t

from prunelab.records import Point, feasible
from prunelab.stats import mean_sd

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


def han_judgement(model: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Our magnitude runs beside each published result for `model`, judged two ways.

    `rows`: one per seed, {"seed", "base_test_error", "ratios": {ratio: {"compression_ratio",
    "test_error"}}} (errors as fractions). (1) Absolute: our mean pruned error against theirs
    (Han: within HAN_TOLERANCE_PP). (2) Change: per seed, pruned error − own baseline error,
    its mean with a 95 % t-interval, against the paper's own change.
    """
    out = []
    for ref in PAPERS.get(model, []):
        check: dict[str, Any] = {**ref, "seeds": len(rows)}
        match = _matching_ratio(rows, ref)
        if match is None:
            out.append({**check, "match": None})
            continue
        base = [100 * r["base_test_error"] for r in rows]
        pruned = [100 * r["ratios"][match]["test_error"] for r in rows]
        change = [p - b for p, b in zip(pruned, base, strict=True)]
        mean, sd = mean_sd(change)
        half = float(t.ppf(0.975, len(change) - 1)) * sd / len(change) ** 0.5 \
            if len(change) > 1 else float("nan")
        check.update(match=match, our_ratio=mean_sd([r["ratios"][match]["compression_ratio"]
                                                       for r in rows])[0],
                     our_base_error=mean_sd(base), our_error=mean_sd(pruned),
                     our_change=(mean, mean - half, mean + half))
        if ref["base_error"] is not None:
            theirs = ref["error"] - ref["base_error"]
            check["their_change"] = theirs
            check["change_verdict"] = ("consistent with theirs" if mean - half <= theirs
                                       <= mean + half else
                                       "worse than theirs" if mean - half > theirs
                                       else "better than theirs")
            check["within_tolerance"] = bool(check["our_error"][0]
                                             <= ref["error"] + HAN_TOLERANCE_PP)
        out.append(check)
    return out


def _matching_ratio(rows: list[dict[str, Any]], ref: dict[str, Any]) -> str | None:
    if not rows:  # no magnitude-weight run at all (e.g. a neuron-only experiment)
        return None

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
