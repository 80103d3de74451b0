"""The comparison: each method over a ladder of compression ratios and several seeds, and
the statistics that say which method is best at each ratio (Blalock et al. 2020).

A ratio r means cutting 1 − 1/r of the prunable weights (weight granularity) or of the
hidden units (neuron granularity); the realised compression of all parameters, and the
FLOPs, are measured on the result, since a neuron cut also removes the next layer's
inputs and biases. Seed s selects the baseline trained with seed s, the calibration
batches, the random scores and the fine-tuning order, so the spread over seeds is the
spread of the whole procedure.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from prunelab.data import Split
from prunelab.masks import prunable_names
from prunelab.metrics import pruning_metrics
from prunelab.models import Net
from prunelab.pruning import PruneSettings, finetune, prune_model
from prunelab.training import FitSettings, evaluate

# Per point, the quantities averaged over seeds (the rest are labels).
MEASURED = ("sparsity", "compression_ratio", "flops", "effective_flops",
            "val_accuracy_before", "test_accuracy_before", "val_accuracy", "test_accuracy",
            "baseline_test_accuracy", "test_accuracy_drop")


def ratio_sparsity(ratio: float) -> float:
    """Fraction to cut for a compression ratio: 2× → 0.5, 32× → 0.96875."""
    if ratio <= 1:
        raise ValueError(f"a compression ratio must exceed 1, got {ratio}")
    return 1.0 - 1.0 / ratio


def sweep_point(
    base: Net, train: Split, val: Split, test: Split, s: PruneSettings, ratio: float,
    seed: int, rounds: int, calib_batches: int, calib_batch_size: int, ft: FitSettings,
    base_test_accuracy: float, on_epoch: Callable[..., None] | None = None,
) -> dict[str, Any]:
    """Prune `base` to `ratio`, fine-tune, and measure before and after on val and test."""
    s = replace(s, sparsity=ratio_sparsity(ratio), threshold=None, seed=seed)
    pruned = prune_model(base, train, val, s, rounds, calib_batches, calib_batch_size, ft, seed)
    bs = ft.eval_batch_size
    point: dict[str, Any] = {
        "method": s.method, "granularity": s.granularity, "ratio": ratio, "seed": seed,
        "target_sparsity": s.sparsity,
        "val_accuracy_before": evaluate(pruned.model, val, bs)[1],
        "test_accuracy_before": evaluate(pruned.model, test, bs)[1],
    }
    finetune(pruned.model, train, val, ft, seed, on_epoch=on_epoch)
    m = pruning_metrics(pruned.model, base.spec, prunable_names(base, s.include_output))
    point.update({k: m[k] for k in ("sparsity", "compression_ratio", "flops",
                                    "effective_flops", "layer_sparsity")})
    point["val_accuracy"] = evaluate(pruned.model, val, bs)[1]
    point["test_accuracy"] = evaluate(pruned.model, test, bs)[1]
    point["baseline_test_accuracy"] = base_test_accuracy
    point["test_accuracy_drop"] = base_test_accuracy - point["test_accuracy"]
    return point


def _mean_sd(values: list[float]) -> tuple[float, float]:
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
            row[k], row[f"{k}_sd"] = _mean_sd([float(p[k]) for p in ps])
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
