"""The comparison's figures and plot series from the sweep's summary rows (its Markdown is
`markdown`'s). No DVC or MLflow here."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; no display on CI or servers
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FuncFormatter, NullFormatter, ScalarFormatter  # noqa: E402

from prunelab.methods import key  # noqa: E402
from prunelab.plumbing.fileio import atomic_path  # noqa: E402
from prunelab.report.style import PALETTE, Look  # noqa: E402

X_AXES = {"compression_ratio": "compression ratio (all parameters, ×)",
          "effective_flops": "effective FLOPs per image"}
STAGES = {"test_accuracy_before": "before fine-tuning", "test_accuracy": "after fine-tuning"}


def series_name(row: dict[str, Any]) -> str:
    return key(row["method"], row["granularity"])


def curve_records(rows: list[dict[str, Any]], x: str, y: str) -> list[dict[str, Any]]:
    """Plot data for DVC: one record per point with the series, x, the mean of y and a
    ±1 sd band (`lo`, `hi`) over seeds (rows without y, such as gmp before fine-tuning,
    are left out)."""
    return [{"series": series_name(r), x: r[x], y: r[y],
             "lo": r[y] - r[f"{y}_sd"], "hi": r[y] + r[f"{y}_sd"]}
            for r in sorted(rows, key=lambda r: (series_name(r), r[x])) if y in r]


def where_they_differ(lows: dict[str, float], highs: dict[str, float]) -> tuple[float, float]:
    """A panel's y-range (in %) where its methods differ: from the lowest point of the
    best three quarters of the methods (ranked by their curve's lowest point) up to the
    highest point of any, with 8 % of the span as a margin. A curve that falls further
    (random, or a criterion that collapses) leaves the panel at the bottom, and the axis
    label names it."""
    ranked = sorted(lows.values(), reverse=True)
    bottom = ranked[math.ceil(0.75 * len(ranked)) - 1]
    top = max(highs.values())
    margin = 0.08 * max(top - bottom, 0.5)
    return bottom - margin, top + margin


def curves_figure(rows: list[dict[str, Any]], x: str, looks: dict[str, Look]) -> Figure:
    """Test accuracy against `x`, before and after fine-tuning (columns), weight and
    neuron granularity (rows); one line per method (its look in `looks`) with a ±1 sd
    band, random included; each panel's y-axis where its methods differ
    (`where_they_differ`), the curves below it named under the x-axis."""
    grans = sorted({r["granularity"] for r in rows}, reverse=True)  # weight, neuron
    fig, axes = plt.subplots(len(grans), 2, figsize=(11, 4 * len(grans)), squeeze=False)
    for i, gran in enumerate(grans):
        for j, (y, stage) in enumerate(STAGES.items()):
            ax = axes[i][j]
            lows: dict[str, float] = {}
            highs: dict[str, float] = {}
            for method in sorted({r["method"] for r in rows if r["granularity"] == gran}):
                rs = sorted((r for r in rows if r["granularity"] == gran
                             and r["method"] == method and y in r), key=lambda r: r[x])
                if not rs:  # no model before fine-tuning (gmp, movement)
                    continue
                xs = [r[x] for r in rs]
                mean = [100 * r[y] for r in rs]
                sd = [100 * r[f"{y}_sd"] for r in rs]
                ax.plot(xs, mean, label=method, markersize=4, **looks[method].line())
                ax.fill_between(xs, [m - s for m, s in zip(mean, sd, strict=True)],
                                [m + s for m, s in zip(mean, sd, strict=True)],
                                color=looks[method].color, alpha=0.15)
                lows[method], highs[method] = min(mean), max(mean)
            if lows:
                bottom, top = where_they_differ(lows, highs)
                ax.set_ylim(bottom, top)
            below = sorted(m for m, low in lows.items() if low < ax.get_ylim()[0])
            ax.set_xscale("log", base=2 if x == "compression_ratio" else 10)
            if x == "compression_ratio":  # 1, 2, 4, 8 rather than 2^1 or 2.0
                ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
            if x == "effective_flops":
                ax.invert_xaxis()  # cheaper to the right, like higher compression
            # Where a curve leaves the zoomed axis, the axis label says which (a legend
            # or a note inside the panel would cover the curves).
            ax.set_xlabel(X_AXES[x] + (f"\nbelow the axis: {', '.join(below)}" if below else ""))
            ax.set_ylabel("test accuracy (%)")
            ax.set_title(f"{gran} granularity, {stage}")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def difference_records(diffs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Plot data for DVC: one record per (criterion, reference, granularity, ratio), the
    difference in pp and its simultaneous interval (`lo`, `hi`)."""
    return [{"series": f"{d['method']}-vs-{d['reference']}-{d['granularity']}",
             "ratio": d["ratio"], "diff_pp": 100 * d["diff"], "lo": 100 * d["sim_lo"],
             "hi": 100 * d["sim_hi"]}
            for d in sorted(diffs, key=lambda d: (d["granularity"] != "weight",
                                                  d["reference"], d["method"], d["ratio"]))]


def difference_figure(diffs: list[dict[str, Any]], looks: dict[str, Look],
                      margin_pp: float) -> Figure:
    """What the study asks, at each ratio: each criterion's test accuracy after
    fine-tuning minus a reference's (columns), per granularity (rows), with intervals
    simultaneous over the panel, the ±margin band of "equivalent" shaded."""
    grans = sorted({d["granularity"] for d in diffs}, key=lambda g: g != "weight")
    refs = list(dict.fromkeys(d["reference"] for d in diffs))
    fig, axes = plt.subplots(len(grans), len(refs), squeeze=False, sharex=True,
                             figsize=(5.5 * len(refs), 3.6 * len(grans)))
    for i, gran in enumerate(grans):
        for j, ref in enumerate(refs):
            ax = axes[i][j]
            ax.axhspan(-margin_pp, margin_pp, color="#DDDDDD", alpha=0.6, lw=0,
                       label=f"±{margin_pp:g} pp")
            ax.axhline(0, color="black", lw=0.8)
            mine = [d for d in diffs if d["granularity"] == gran and d["reference"] == ref]
            methods = list(dict.fromkeys(d["method"] for d in mine))
            for k, method in enumerate(methods):
                ds = sorted((d for d in mine if d["method"] == method), key=lambda d: d["ratio"])
                # Criteria side by side at each ratio, so that their intervals do not overlap.
                xs = [d["ratio"] * 2 ** (0.06 * (k - (len(methods) - 1) / 2)) for d in ds]
                y = [100 * d["diff"] for d in ds]
                below = [100 * (d["diff"] - d["sim_lo"]) for d in ds]
                above = [100 * (d["sim_hi"] - d["diff"]) for d in ds]
                ax.errorbar(xs, y, yerr=[below, above], label=method, capsize=2,
                            markersize=4, **looks[method].line())
            ax.set_xscale("log", base=2)
            ax.xaxis.set_major_formatter(ScalarFormatter())
            ax.set_xlabel("compression ratio (target, ×)")
            ax.set_ylabel(f"minus {ref} (pp)")
            ax.set_title(f"{gran} granularity: criterion − {ref}, after fine-tuning",
                         fontsize=10)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def layer_sparsity_figure(finetune_metrics: dict[str, dict[str, Any]],
                          layer_names: dict[str, str]) -> Figure:
    """Per-layer sparsity of each method's searched operating point after fine-tuning
    (metrics/finetune/*: gmp and movement reach theirs during it), one panel per
    granularity, layers by the names a reader knows (`layer_names`: body.2.weight -> fc1)."""
    grans = sorted({k.rsplit("-", 1)[1] for k in finetune_metrics}, reverse=True)
    layers = sorted({k for m in finetune_metrics.values() for k in m["layer_sparsity"]},
                    key=lambda n: list(layer_names).index(n) if n in layer_names else 0)
    fig, axes = plt.subplots(len(grans), 1, figsize=(11, 3.2 * len(grans)), squeeze=False)
    width = 0.8 / max(len(layers), 1)
    for ax, gran in zip(axes[:, 0], grans, strict=True):
        names = sorted(k for k in finetune_metrics if k.endswith(f"-{gran}"))
        for i, layer in enumerate(layers):
            ax.bar([n + i * width for n in range(len(names))],
                   [100 * finetune_metrics[k]["layer_sparsity"].get(layer, 0.0)
                    for k in names], width, label=layer_names.get(layer, layer),
                   color=PALETTE[i % len(PALETTE)])
        ax.set_xticks([n + 0.4 - width / 2 for n in range(len(names))],
                      [k.rsplit("-", 1)[0] for k in names], fontsize=8)
        ax.set_ylim(0, 100)
        ax.set_ylabel("sparsity (%)")
        ax.set_title(f"{gran} granularity: per-layer sparsity at the searched operating "
                     "points, after fine-tuning", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8, title="layer", title_fontsize=8)
    fig.tight_layout()
    return fig


def oracle_figure(scatter: dict[str, dict[str, tuple[Any, Any]]]) -> Figure:
    """Score against true damage (first seed), one panel per criterion and granularity;
    log scores, symmetric-log damage (removing a unit can also lower the loss)."""
    panels = [(m, g) for g in ("neuron", "weight") for m in scatter]
    cols = min(4, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.8 * rows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, (method, gran) in zip(axes.flat, panels, strict=False):
        score, damage = (t.double().cpu().numpy() for t in scatter[method][gran])
        positive = score[score > 0]
        floor = positive.min() if positive.size else 1e-12
        ax.scatter(score.clip(min=floor), damage, s=3, alpha=0.4)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # "2×10⁻³" over the decade's label
        ax.set_yscale("symlog", linthresh=1e-6)
        ax.set_title(f"{method}, {gran}", fontsize=9)
        ax.set_xlabel("score", fontsize=8)
        ax.set_ylabel("true loss change", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    return fig


def set_oracle_figure(sets: dict[str, Any], looks: dict[str, Look]) -> Figure:
    """Held-out accuracy with each criterion's whole set removed, against the ratio (mean
    over seeds), units and (where measured) weights; the greedy oracle's set dashed."""
    panels = [(g, sets[k]) for g, k in (("neuron", "sets"), ("weight", "weight_sets"))
              if k in sets]
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    for ax, (granularity, by_method) in zip(axes[0], panels, strict=True):
        for method, cells in by_method.items():
            keys = sorted(cells, key=lambda r: float(r[1:]))  # "r2", "r4", ...
            ax.plot([float(r[1:]) for r in keys],
                    [100 * cells[r]["accuracy"]["mean"] for r in keys],
                    label=method, markersize=4, **looks[method].line())
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.set_xlabel("ratio (cut: 1 − 1/r)")
        ax.set_ylabel("held-out accuracy, set removed (%)")
        ax.set_title(f"{granularity} sets, no fine-tuning")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def save_figure(fig: Figure, path: Path) -> None:
    """The figure as a PNG of at most 256 colours: the committed figures stay small (a
    full-colour PNG of the accuracy panels was 450 KB, mostly anti-aliasing shades;
    quantised, a third of that, and it looks the same at 100 %)."""
    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, dpi=110, format="png")
    plt.close(fig)
    buf.seek(0)
    with Image.open(buf) as img:
        small = img.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT)
    with atomic_path(path) as tmp:
        small.save(tmp, format="png", optimize=True)
