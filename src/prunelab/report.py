"""The comparison's outputs from the sweep's summary rows: plot series, figures, the check
against the published numbers, and the Markdown report. No DVC or MLflow here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; no display on CI or servers
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import ScalarFormatter  # noqa: E402

from prunelab.fileio import atomic_path  # noqa: E402

# Published results to put ours beside: (baseline error %, pruned error %, compression ×).
# Han et al. 2015, "Learning both Weights and Connections", Table 1 (iterative magnitude
# pruning with retraining); Lee et al. 2019, "SNIP", Table 2 (one-shot at initialisation).
PAPERS: dict[str, list[dict[str, Any]]] = {
    "lenet300": [
        {"paper": "Han et al. 2015", "base_error": 1.64, "error": 1.59, "ratio": 12.0},
        {"paper": "Lee et al. 2019 (SNIP)", "base_error": None, "error": 1.6, "ratio": 20.0},
    ],
    "lenet5": [
        {"paper": "Han et al. 2015", "base_error": 0.80, "error": 0.77, "ratio": 12.0},
        {"paper": "Lee et al. 2019 (SNIP)", "base_error": None, "error": 0.8, "ratio": 50.0},
    ],
}
HAN_TOLERANCE_PP = 0.15

X_AXES = {"compression_ratio": "compression ratio (all parameters, ×)",
          "effective_flops": "effective FLOPs per image"}
STAGES = {"test_accuracy_before": "before fine-tuning", "test_accuracy": "after fine-tuning"}


def series_name(row: dict[str, Any]) -> str:
    return f"{row['method']}-{row['granularity']}"


def curve_records(rows: list[dict[str, Any]], x: str, y: str) -> list[dict[str, Any]]:
    """Plot data for DVC: one record per point with the series, x, the mean of y and a
    ±1 sd band (`lo`, `hi`) over seeds."""
    return [{"series": series_name(r), x: r[x], y: r[y],
             "lo": r[y] - r[f"{y}_sd"], "hi": r[y] + r[f"{y}_sd"]}
            for r in sorted(rows, key=lambda r: (series_name(r), r[x]))]


def curves_figure(rows: list[dict[str, Any]], x: str) -> Figure:
    """Test accuracy against `x`, before and after fine-tuning (columns), weight and
    neuron granularity (rows); one line per method with a ±1 sd band, random included."""
    grans = sorted({r["granularity"] for r in rows}, reverse=True)  # weight, neuron
    fig, axes = plt.subplots(len(grans), 2, figsize=(11, 4 * len(grans)), squeeze=False)
    for i, gran in enumerate(grans):
        for j, (y, stage) in enumerate(STAGES.items()):
            ax = axes[i][j]
            for method in sorted({r["method"] for r in rows if r["granularity"] == gran}):
                rs = sorted((r for r in rows if r["granularity"] == gran
                             and r["method"] == method), key=lambda r: r[x])
                xs = [r[x] for r in rs]
                mean = [100 * r[y] for r in rs]
                sd = [100 * r[f"{y}_sd"] for r in rs]
                style = {"linestyle": "--", "color": "black"} if method == "random" else {}
                line, = ax.plot(xs, mean, marker="o", label=method, **style)
                ax.fill_between(xs, [m - s for m, s in zip(mean, sd, strict=True)],
                                [m + s for m, s in zip(mean, sd, strict=True)],
                                color=line.get_color(), alpha=0.2)
            ax.set_xscale("log", base=2 if x == "compression_ratio" else 10)
            if x == "compression_ratio":  # 2, 4, 8 rather than 2^1, 2^2, 2^3
                ax.xaxis.set_major_formatter(ScalarFormatter())
            if x == "effective_flops":
                ax.invert_xaxis()  # cheaper to the right, like higher compression
            ax.set_xlabel(X_AXES[x])
            ax.set_ylabel("test accuracy (%)")
            ax.set_title(f"{gran} granularity, {stage}")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def layer_sparsity_figure(prune_metrics: dict[str, dict[str, Any]]) -> Figure:
    """Per-layer sparsity of each method's searched operating point (metrics/prune/*)."""
    names = sorted(prune_metrics)
    layers = sorted({k for m in prune_metrics.values() for k in m["layer_sparsity"]})
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(names)), 4))
    width = 0.8 / max(len(layers), 1)
    for i, layer in enumerate(layers):
        ax.bar([n + i * width for n in range(len(names))],
               [100 * prune_metrics[k]["layer_sparsity"].get(layer, 0.0) for k in names],
               width, label=layer)
    ax.set_xticks([n + 0.4 - width / 2 for n in range(len(names))], names, rotation=30,
                  ha="right", fontsize=8)
    ax.set_ylabel("sparsity (%)")
    ax.set_title("per-layer sparsity at the searched operating points")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def paper_check(model: str, rows: list[dict[str, Any]],
                base_accuracy: float) -> list[dict[str, Any]]:
    """Our magnitude/weight result beside each published one for this model: our row at the
    lowest measured compression at or above the paper's (else the highest we have)."""
    ours = sorted((r for r in rows if r["method"] == "magnitude"
                   and r["granularity"] == "weight"), key=lambda r: r["compression_ratio"])
    out = []
    for ref in PAPERS.get(model, []):
        if not ours:
            break
        row = next((r for r in ours if r["compression_ratio"] >= ref["ratio"]), ours[-1])
        error = 100 * (1 - row["test_accuracy"])
        check: dict[str, Any] = {
            **ref, "our_base_error": 100 * (1 - base_accuracy), "our_error": error,
            "our_error_sd": 100 * row["test_accuracy_sd"],
            "our_ratio": row["compression_ratio"], "seeds": row["seeds"],
        }
        if ref["paper"].startswith("Han"):
            check["within_tolerance"] = bool(error <= ref["error"] + HAN_TOLERANCE_PP
                                             and row["compression_ratio"] >= ref["ratio"])
        out.append(check)
    return out


def _pct(mean: float, sd: float, n: int) -> str:
    """mean ± sd in %; a single seed has no sample sd, so none is shown."""
    return f"{100 * mean:.2f} ± {100 * sd:.2f}" if n > 1 else f"{100 * mean:.2f}"


def markdown(model: str, rows: list[dict[str, Any]], verdicts: list[dict[str, Any]],
             papers: list[dict[str, Any]], baseline: tuple[float, float], seeds: list[int],
             figures: dict[str, str], settings: str) -> str:
    """reports/report.md: verdicts first, then the table, the figures, the paper check."""
    lines = [f"# Pruning criteria compared on `{model}`", "",
             f"Baseline test accuracy {_pct(*baseline, len(seeds))} % (mean ± sample sd "
             f"over seeds {seeds}; with one seed, no sd). {settings}", "", "## Verdicts", "",
             "Best method by mean test accuracy after fine-tuning at each ratio; the gap to "
             "the runner-up counts as real when it exceeds the sum of their seed sds (the "
             "±1 sd bands do not overlap).", ""]
    for v in verdicts:
        text = (f"- **{v['granularity']}, {v['ratio']:g}×**: {v['best']} "
                f"({_pct(v['best_mean'], v['best_sd'], v['seeds'])} %)")
        if "runner_up" in v:
            if v["significant"] is None:
                judged = "one seed, so no spread to judge the gap against"
            else:
                real = "larger than" if v["significant"] else "within"
                judged = f"{real} the seed spread ({100 * v['spread']:.2f} pp)"
            text += f", ahead of {v['runner_up']} by {100 * v['gap']:.2f} pp — {judged}"
        if "margin_over_random" in v:
            text += f"; {100 * v['margin_over_random']:.2f} pp above random"
        lines.append(text + ".")
    lines += ["", "## Table", "",
              "Accuracies in %, mean ± sd over seeds; ratio is the target (cut 1 − 1/r of "
              "the prunable weights or hidden units), compression the realised ratio of all "
              "parameters.", "",
              "| method | granularity | ratio | compression | sparsity | effective MFLOPs "
              "| test acc before FT | test acc after FT | drop (pp) |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['granularity']} | {r['ratio']:g} | "
            f"{r['compression_ratio']:.1f}× | {100 * r['sparsity']:.1f} % | "
            f"{r['effective_flops'] / 1e6:.3f} | "
            f"{_pct(r['test_accuracy_before'], r['test_accuracy_before_sd'], r['seeds'])} | "
            f"{_pct(r['test_accuracy'], r['test_accuracy_sd'], r['seeds'])} | "
            f"{_pct(r['test_accuracy_drop'], r['test_accuracy_drop_sd'], r['seeds'])} |")
    lines += ["", "## Figures", ""]
    lines += [f"![{title}]({path})" for title, path in figures.items()]
    lines += ["", "## Check against the papers", ""]
    if not papers:
        lines.append(f"The published tables cover `lenet300` and `lenet5`, not `{model}`; see "
                     "the README for the LeNet runs.")
    else:
        lines += ["| paper | their error (%) | their compression | our error (%) | our "
                  "compression | within 0.15 pp (Han) |", "|---|---|---|---|---|---|"]
        for p in papers:
            base = f"{p['base_error']:.2f} → " if p["base_error"] is not None else ""
            within = {True: "yes", False: "no"}.get(p.get("within_tolerance"), "—")
            lines.append(f"| {p['paper']} | {base}{p['error']:.2f} | {p['ratio']:g}× | "
                         f"{p['our_base_error']:.2f} → "
                         f"{_pct(p['our_error'] / 100, p['our_error_sd'] / 100, p['seeds'])} | "
                         f"{p['our_ratio']:.1f}× | {within} |")
    return "\n".join(lines) + "\n"


def save_figure(fig: Figure, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
