"""The report's verdicts in Markdown: per cell, the best method, the methods that cannot be
told apart from it, and every paired comparison with its interval and adjusted p-value."""

from __future__ import annotations

from typing import Any

from prunelab.stats import ALPHA, RANDOM_MATCHED


def cell_label(v: dict[str, Any]) -> str:
    return (f"{v['granularity']}, {v['ratio']:g}× (realised {v['compression']:.1f}× of all "
            f"parameters, methods within {100 * v['compression_spread']:.1f} %)")


def verdict_lines(verdicts: list[dict[str, Any]], decided_counts: dict[str, int]) -> list[str]:
    n = len(verdicts)
    lines = [
        "## Verdicts", "",
        "Best method by mean test accuracy after fine-tuning in each cell, compared in pairs "
        "with every other method on the same seeds and the same test images: the difference "
        "of accuracy with a 95 % t-interval whose standard error counts both the spread over "
        "seeds and the test set's sampling noise; p-values Holm–Bonferroni adjusted across "
        f"all comparisons of one granularity (family-wise α = {ALPHA}). A cell is decided "
        "when the best method is ahead of every other after adjustment; otherwise the "
        "methods it cannot be told apart from are named. `random-matched` is random pruning "
        "with the best method's own per-layer sparsity.", "",
        f"Decided cells: **{decided_counts['all']} of {n}** with all seeds"
        + "".join(f"; {c} of {n} with the first {k} seeds" for k, c in decided_counts.items()
                  if k != "all") + ".", ""]
    for v in verdicts:
        text = f"- **{cell_label(v)}**: {v['best']} ({100 * v['best_mean']:.2f} %)"
        if v["decided"]:
            text += " — decided: ahead of every other method"
        elif len(v["ties"]) > 1:
            text += " — not decided: cannot be told apart from " + ", ".join(v["ties"][1:])
        for control in ("random", RANDOM_MATCHED):
            c = v["comparisons"].get(control)
            if c is not None:
                above = "above" if c["lo"] > 0 and c["p_holm"] < ALPHA else "not clearly above"
                text += f"; {above} {control} by {100 * c['diff']:.2f} pp"
        lines.append(text + ".")
    lines += ["", "| cell | best | compared with | difference (pp) [95 % CI] | p (Holm) | "
              "seeds where McNemar p < 0.05 |", "|---|---|---|---|---|---|"]
    for v in verdicts:
        for other, c in v["comparisons"].items():
            mc = sum(p < ALPHA for p in c["mcnemar_p"])
            lines.append(f"| {v['granularity']} {v['ratio']:g}× | {v['best']} | {other} | "
                         f"{100 * c['diff']:+.2f} [{100 * c['lo']:+.2f}, {100 * c['hi']:+.2f}]"
                         f" | {c['p_holm']:.3g} | {mc} of {c['seeds']} |")
    return lines
