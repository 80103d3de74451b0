"""The Markdown of "When to prune": the question at initialisation, the sanity checks and
the accuracy table (`analysis.when`). Numbers in, text out."""

from __future__ import annotations

from typing import Any

from prunelab.analysis.stats import mean_sd
from prunelab.report.answer import SENTENCE, answer_sentence, contrast_line


def _cell(values: list[float]) -> str:
    mean, sd = mean_sd(values)
    return f"{100 * mean:.2f} ± {100 * sd:.2f}"


def accuracy_table(points: list[dict[str, Any]]) -> list[str]:
    """Test accuracy (%, mean ± sd over seeds) per method and variant × ratio."""
    ratios = sorted({p["ratio"] for p in points})
    rows: dict[tuple[str, str], dict[float, list[float]]] = {}
    for p in points:
        rows.setdefault((p["method"], p["variant"]), {}).setdefault(p["ratio"], []).append(
            p["test_accuracy"])
    lines = ["| method | variant | " + " | ".join(f"{r:g}×" for r in ratios) + " |",
             "|---|---|" + "---|" * len(ratios)]
    for (method, variant), by_ratio in rows.items():
        lines.append(f"| {method} | {variant} | " + " | ".join(
            _cell(by_ratio[r]) if r in by_ratio else "" for r in ratios) + " |")
    return lines


def section(points: list[dict[str, Any]], analysis: dict[str, Any], ask: str, epochs: int,
            after_epochs: int, seeds: list[int], margin_pp: float, alpha: float) -> str:
    """The report's "When to prune" section, from the points at initialisation and their
    analysis (`analysis.when.at_init`)."""
    lines = ["", "## When to prune: at initialisation", "",
             f"Each method's mask cut from the seed's own freshly initialised network θ₀ (the "
             f"draw its dense baseline started from), then trained for {epochs} epochs (an "
             f"after-training point has trained {after_epochs} in all), over seeds "
             f"{seeds}: SNIP, GraSP and SynFlow rank their raw scores globally, as their "
             "papers do; magnitude (|θ₀|) and random are the controls. The same paired "
             f"statistics as the sweep's questions (area under test accuracy over log₂ "
             f"compression, Holm at α = {alpha:g}, margin ±{margin_pp:g} pp; intervals "
             "simultaneous over the family).", ""]
    question = analysis["question"]
    if question:
        lines += [f"{SENTENCE}{answer_sentence(question, 'At initialisation')}", "",
                  f"{ask} Its contrasts, one Holm family:", "",
                  *(contrast_line(c) for c in question), ""]
    if analysis["sanity"]:
        lines += ["**The sanity checks** (Frankle et al. 2021, §5): each method's own mask "
                  "against the same per-layer densities with the mask shuffled within each "
                  "layer, and against its mask on re-initialised weights; a method whose "
                  "choice within layers carries information is ahead of both (one Holm family "
                  "per method).", ""]
        for m, found in analysis["sanity"].items():
            verdict = ("survives both" if found["survives"] else
                       "does not survive: its choice within layers is not shown to matter")
            lines += [f"- `{m}` {verdict}:", *(f"  {contrast_line(c)}" for c in found["contrasts"])]
        lines.append("")
    lines += ["Test accuracy (%, mean ± sd over seeds):", "", *accuracy_table(points), ""]
    return "\n".join(lines) + "\n"
