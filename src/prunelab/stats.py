"""Statistics of the comparison, as library code with hand-worked tests."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from typing import Any

# Per point, the quantities averaged over seeds (the rest are labels).
MEASURED = ("sparsity", "compression_ratio", "flops", "effective_flops",
            "val_accuracy_before", "test_accuracy_before", "val_accuracy", "test_accuracy",
            "baseline_test_accuracy", "test_accuracy_drop")


def mean_sd(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0.0 for a single value, which has none)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarize(points: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (method, granularity, ratio): mean and sample sd over seeds."""
    groups: dict[tuple[str, str, float], list[dict[str, Any]]] = {}
    for p in points:
        groups.setdefault((p["method"], p["granularity"], p["ratio"]), []).append(p)
    rows = []
    for (method, granularity, ratio), ps in sorted(groups.items()):
        row: dict[str, Any] = {"method": method, "granularity": granularity, "ratio": ratio,
                               "seeds": len(ps)}
        for k in MEASURED:
            row[k], row[f"{k}_sd"] = mean_sd([float(p[k]) for p in ps])
        rows.append(row)
    return rows


def verdicts(rows: list[dict[str, Any]], key: str = "test_accuracy") -> list[dict[str, Any]]:
    """For each (granularity, ratio): the best method by mean `key`, the runner-up, and
    whether the gap exceeds the seed spread (sd of best + sd of runner-up, i.e. the ±1 sd
    bands do not overlap; None with a single seed); also the best method's margin over the
    random control."""
    out = []
    cells: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for r in rows:
        cells.setdefault((r["granularity"], r["ratio"]), []).append(r)
    for (granularity, ratio), rs in sorted(cells.items(), key=lambda c: (c[0][0] != "weight",
                                                                         c[0][1])):
        ranked = sorted(rs, key=lambda r: r[key], reverse=True)
        best = ranked[0]
        v: dict[str, Any] = {"granularity": granularity, "ratio": ratio, "best": best["method"],
                             "best_mean": best[key], "best_sd": best[f"{key}_sd"],
                             "seeds": best["seeds"]}
        if len(ranked) > 1:
            second = ranked[1]
            gap = best[key] - second[key]
            spread = best[f"{key}_sd"] + second[f"{key}_sd"]
            # With one seed there is no spread to weigh the gap against: undecided (None).
            judged = min(best["seeds"], second["seeds"]) > 1
            v.update(runner_up=second["method"], gap=gap, spread=spread,
                     significant=bool(gap > spread) if judged else None)
        random = next((r for r in rs if r["method"] == "random"), None)
        if random is not None and random not in ranked[:2]:
            v["margin_over_random"] = best[key] - random[key]
        out.append(v)
    return out
