"""Every piece of the report's Markdown: reports/report.md with its verdicts and table, the
criterion-quality section, the unrealised points, and the check against the papers
(also `papers/*.md`). Numbers in, text out: no files, DVC or MLflow here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prunelab.records import InfeasiblePoint
from prunelab.stats import ALPHA, RANDOM_MATCHED


def cell_label(v: dict[str, Any]) -> str:
    return (f"{v['granularity']}, {v['ratio']:g}× (realised {v['compression']:.1f}× of all "
            f"parameters, methods within {100 * v['compression_spread']:.1f} %)")


def verdict_lines(verdicts: list[dict[str, Any]], decided_counts: dict[str, int]) -> list[str]:
    n = len(verdicts)
    lines = [
        "## Verdicts after fine-tuning", "",
        "Best method by mean validation accuracy after fine-tuning in each cell (shown with "
        "its test accuracy), compared in pairs with every other method on the same seeds "
        "and the same test images: the difference of test accuracy with a 95 % t-interval "
        "whose standard error counts the spread over seeds, the test set's sampling noise "
        "and their interaction once each (crossed random effects, Satterthwaite df); "
        "p-values Holm–Bonferroni adjusted across all comparisons of one granularity "
        f"(family-wise α = {ALPHA}). A cell is decided when the best method is ahead of "
        "every other after adjustment; otherwise the methods it is not ahead of are named. "
        "`random-matched` is random pruning with the best method's own per-layer "
        "sparsity.", "",
        f"Decided cells: **{decided_counts['all']} of {n}** with all seeds"
        + "".join(f"; {c} of {n} with the first {k} seeds" for k, c in decided_counts.items()
                  if k != "all") + ".", ""]
    return lines + _verdict_bullets(verdicts) + _comparison_table(verdicts)


def before_finetuning_lines(verdicts: list[dict[str, Any]]) -> list[str]:
    """The same verdicts on the pruned models before fine-tuning: one-shot accuracy, where
    a surgeon's update (OBS) should show, as fine-tuning can make up for a poor cut."""
    decided = sum(v["decided"] for v in verdicts)
    return ["", "## Verdicts before fine-tuning", "",
            "As above, on the same models right after the cut (best chosen on validation "
            "accuracy before fine-tuning; its own Holm family per granularity). Decided "
            f"cells: **{decided} of {len(verdicts)}**.", ""
            ] + _verdict_bullets(verdicts) + _comparison_table(verdicts)


def _verdict_bullets(verdicts: list[dict[str, Any]]) -> list[str]:
    lines = []
    for v in verdicts:
        text = f"- **{cell_label(v)}**: {v['best']} ({100 * v['best_mean']:.2f} %)"
        if v["decided"]:
            text += " — decided: ahead of every other method"
        elif len(v["ties"]) > 1:
            text += " — not decided: not ahead of " + ", ".join(v["ties"][1:])
        for control in ("random", RANDOM_MATCHED):
            c = v["comparisons"].get(control)
            if c is not None:
                diff = f"{100 * c['diff']:+.2f} pp"
                if c["lo"] > 0 and c["p_holm"] < ALPHA:
                    text += f"; above {control} by {diff}"
                elif c["diff"] > 0:
                    text += f"; not clearly above {control} ({diff})"
                else:
                    text += f"; not above {control} ({diff} on test)"
        lines.append(text + ".")
    return lines


def _comparison_table(verdicts: list[dict[str, Any]]) -> list[str]:
    lines = ["", "| cell | best | compared with | difference (pp) [95 % CI] | p (Holm) | "
             "seeds where McNemar p < 0.05 |", "|---|---|---|---|---|---|"]
    for v in verdicts:
        for other, c in v["comparisons"].items():
            mc = sum(p < ALPHA for p in c["mcnemar_p"])
            lines.append(f"| {v['granularity']} {v['ratio']:g}× | {v['best']} | {other} | "
                         f"{_interval(c)} | {c['p_holm']:.3g} | {mc} of {c['seeds']} |")
    return lines


def ablation_lines(contrasts: list[tuple[list[dict[str, Any]], list[dict[str, Any]]]]
                   ) -> list[str]:
    """Each ablation's (right after the cut, after fine-tuning) contrasts as one table."""
    lines: list[str] = []
    for before, after in contrasts:
        if not after:
            continue
        method, other = after[0]["method"], after[0]["other"]
        lines += ["", f"## Ablation: `{method}` against `{other}`", "",
                  f"The same cut with and without what `{method}` adds to it, paired on seeds "
                  "and test images (as the verdicts); p Holm-adjusted over the cells of each "
                  "column. Positive: the addition helps.", "",
                  "| cell | right after the cut (pp) [95 % CI] | p (Holm) "
                  "| after fine-tuning (pp) [95 % CI] | p (Holm) |", "|---|---|---|---|---|"]
        right_after = {(c["granularity"], c["ratio"]): c for c in before}
        for c in after:
            b = right_after.get((c["granularity"], c["ratio"]))
            lines.append(f"| {c['granularity']} {c['ratio']:g}× | "
                         + (f"{_interval(b)} | {b['p_holm']:.3g}" if b else "— | —")
                         + f" | {_interval(c)} | {c['p_holm']:.3g} |")
    return lines


def _interval(c: dict[str, Any]) -> str:
    return f"{100 * c['diff']:+.2f} [{100 * c['lo']:+.2f}, {100 * c['hi']:+.2f}]"


def oracle_table(quality: dict[str, Any]) -> list[str]:
    """Markdown rows: Spearman ρ and bottom-half agreement per criterion, granularity and
    layer (mean ± sd over seeds)."""
    lines = ["| criterion | granularity | layer | ρ with loss increase | ρ with \\|Δloss\\| "
             "| truly least important half also ranked low |", "|---|---|---|---|---|---|"]
    for method, grans in quality.items():
        for gran, layers in grans.items():
            for layer, q in layers.items():
                rho, rho_abs, low = q["spearman"], q["spearman_abs"], q["bottom_half"]
                lines.append(f"| {method} | {gran} | {layer} | {rho['mean']:.2f} ± "
                             f"{rho['sd']:.2f} | {rho_abs['mean']:.2f} ± {rho_abs['sd']:.2f} "
                             f"| {100 * low['mean']:.0f} ± {100 * low['sd']:.0f} % |")
    return lines


def oracle_section(quality: dict[str, Any], figure: Path, report_dir: Path,
                   examples: int) -> str:
    """The criterion-quality table and scatter plot, as a Markdown section."""
    rel = Path(*[".."] * len(report_dir.parts)) / figure
    lines = ["", "## Criterion quality against the true damage", "",
             f"For every hidden unit, and for a random sample of single weights per layer, the "
             f"true change of the loss on {examples} held-out validation images when it alone "
             "is removed (the oracle of Molchanov et al. 2017), against each criterion's score "
             "on the same baseline (mean ± sd over seeds). A criterion that knows what matters "
             "has ρ near 1; random has ρ near 0 and ranks about 50 % of the truly least "
             "important half low. The loss increase is signed (removing some units lowers "
             "the held-out loss, and those are the best to cut); first-order criteria "
             "estimate its magnitude, hence the second column.", "", *oracle_table(quality), "",
             f"![score vs true damage, first seed]({rel.as_posix()})", ""]
    return "\n".join(lines)


def infeasible_section(points: list[InfeasiblePoint]) -> str:
    if not points:
        return ""
    lines = ["", "## Points that could not be realised", ""]
    lines += [f"- {p['method']}-{p['granularity']}, ratio {p['ratio']:g}, seed {p['seed']}: "
              f"{p['infeasible']}" for p in points]
    return "\n".join(lines) + "\n"


def _pct(mean: float, sd: float, n: int) -> str:
    """mean ± sd in %; a single seed has no sample sd, so none is shown."""
    return f"{100 * mean:.2f} ± {100 * sd:.2f}" if n > 1 else f"{100 * mean:.2f}"


def report(model: str, rows: list[dict[str, Any]], verdicts: list[dict[str, Any]],
           before: list[dict[str, Any]], paper_text: str, baseline: tuple[float, float],
           seeds: list[int], figures: dict[str, str], settings: str,
           decided_counts: dict[str, int],
           ablations: list[tuple[list[dict[str, Any]], list[dict[str, Any]]]]) -> str:
    """reports/report.md: verdicts first, then the table, the figures, the paper check."""
    lines = [f"# Pruning criteria compared on `{model}`", "",
             f"Baseline test accuracy {_pct(*baseline, len(seeds))} % (mean ± sample sd "
             f"over seeds {seeds}; with one seed, no sd). {settings}", ""]
    lines += verdict_lines(verdicts, decided_counts)
    lines += before_finetuning_lines(before)
    lines += ablation_lines(ablations)
    lines += ["", "## Table", "",
              "Accuracies in %, mean ± sd over seeds; ratio is the target (cut 1 − 1/r of "
              "the prunable weights or hidden units), compression the realised ratio of all "
              "parameters.", "",
              "| method | granularity | ratio | compression | sparsity | effective MFLOPs "
              "| test acc before FT | test acc after FT | drop (pp) | random-matched after FT |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['granularity']} | {r['ratio']:g} | "
            f"{r['compression_ratio']:.1f}× | {100 * r['sparsity']:.1f} % | "
            f"{r['effective_flops'] / 1e6:.3f} | "
            + (_pct(r["test_accuracy_before"], r["test_accuracy_before_sd"], r["seeds"])
               if "test_accuracy_before" in r else "— (cut while fine-tuning)") + " | "
            f"{_pct(r['test_accuracy'], r['test_accuracy_sd'], r['seeds'])} | "
            f"{_pct(r['test_accuracy_drop'], r['test_accuracy_drop_sd'], r['seeds'])} | "
            + (_pct(r["test_accuracy_matched_random"], r["test_accuracy_matched_random_sd"],
                    r["seeds"]) if "test_accuracy_matched_random" in r else "—") + " |")
    lines += ["", "## Figures", ""]
    lines += [f"![{title}]({path})" for title, path in figures.items()]
    lines += ["", "## Check against the papers", "", paper_text]
    return "\n".join(lines) + "\n"


def han_section(intro: str, checks: list[dict[str, Any]]) -> str:
    """Both judgements for every published row, after `intro` (where the runs come from)."""
    lines = [intro + " Errors in %, mean ± sd over seeds; change = pruned error − the same "
             "seed's baseline error, with a 95 % t-interval.", "",
             "| paper | their error | their change | ours at | our error | our change "
             "[95 % CI] | within 0.15 pp (absolute) | change vs theirs |",
             "|---|---|---|---|---|---|---|---|"]
    for c in checks:
        theirs = (f"{c['base_error']:.2f} → " if c["base_error"] is not None else "") + \
            f"{c['error']:.2f} at {c['ratio']:g}×"
        if c["match"] is None:
            lines.append(f"| {c['paper']} ({c.get('note', c['kind'])}) | {theirs} | — | "
                         "no matching point "
                         "| — | — | — | — |")
            continue
        mean, lo, hi = c["our_change"]
        lines.append(
            f"| {c['paper']} ({c.get('note', c['kind'])}) | {theirs} | "
            + (f"{c['their_change']:+.2f}" if "their_change" in c else "—")
            + f" | {c['our_ratio']:.1f}× | {c['our_base_error'][0]:.2f} → "
            f"{c['our_error'][0]:.2f} ± {c['our_error'][1]:.2f} | {mean:+.2f} "
            f"[{lo:+.2f}, {hi:+.2f}] | "
            + {True: "yes", False: "no", None: "—"}[c.get("within_tolerance")]
            + f" | {c.get('change_verdict', '—')} |")
    return "\n".join(lines) + "\n"
