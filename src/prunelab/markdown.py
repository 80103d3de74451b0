"""Every piece of the report's Markdown: reports/report.md with its verdicts and table, the
criterion-quality section, the unrealised points, and the check against the papers
(also `papers/*.md`). Numbers in, text out: no files, DVC or MLflow here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prunelab.records import InfeasiblePoint
from prunelab.verdicts import LABELS, RANDOM_MATCHED


def cell_label(v: dict[str, Any]) -> str:
    return (f"{v['granularity']}, {v['ratio']:g}× (realised {v['compression']:.1f}× of all "
            f"parameters, methods within {100 * v['compression_spread']:.1f} %)")


ANSWERS = ("ahead", "behind", "equivalent", "open")  # of a primary contrast
SETS = {"ahead": "ahead of", "equivalent": "equivalent to", "open": "open against"}


def answer_lines(primary: list[dict[str, Any]], margin_pp: float, alpha: float,
                 power: float) -> list[str]:
    """The report's opening: the study's question answered by the primary contrasts."""
    lines = ["## The answer", "",
             "Does the gradient tell what matters better than weight magnitude or neuron "
             "activity? Each gradient-based criterion against each reference, on the area "
             "under its test-accuracy curve over log₂ compression (the whole sweep, one "
             "number per seed, in pp of accuracy); pre-registered in params.yaml "
             "(`report`), one-sided (the criterion ahead), Holm within a granularity at "
             f"α = {alpha:g}; beside it the reverse direction and equivalence within "
             f"±{margin_pp:g} pp (TOST), Holm in a family of their own. Intervals are "
             "simultaneous (Bonferroni) over the granularity's contrasts; the seeds are "
             f"those {100 * power:.0f} % power at the margin would need, estimated on "
             "validation images.", ""]
    for granularity in dict.fromkeys(c["granularity"] for c in primary):
        mine = [c for c in primary if c["granularity"] == granularity]
        groups = {a: [f"{c['method']} vs {c['other']}" for c in mine if c["answer"] == a]
                  for a in ANSWERS}
        summary = "; ".join(f"{a}: {', '.join(g)}" for a, g in groups.items() if g)
        lines.append(f"**{granularity} granularity** — {summary}.")
        lines.append("")
        for c in mine:
            need = c.get("seeds_needed")
            lines.append(
                f"- `{c['method']}` vs `{c['other']}`: {100 * c['diff']:+.2f} pp "
                f"[{100 * c['lo_adj']:+.2f}, {100 * c['hi_adj']:+.2f}] over {c['seeds']} "
                f"seeds; ahead p = {c['p_ahead_holm']:.3g}, behind p = "
                f"{c['p_behind_holm']:.3g}, equivalent p = {c['p_equiv_holm']:.3g} (Holm) — "
                f"**{c['answer']}**; power needs "
                + ("more test images than seeds can make up" if need is None
                   else f"{need} seeds") + ".")
        lines.append("")
    return lines


def verdict_lines(verdicts: list[dict[str, Any]], margin_pp: float, alpha: float) -> list[str]:
    counts = {label: sum(v["label"] == label for v in verdicts) for label in LABELS}
    lines = [
        "## Verdicts after fine-tuning", "",
        "Per cell, the best method by mean validation accuracy after fine-tuning (shown with "
        "its test accuracy), compared on test with every other method on the same seeds and "
        "images: the difference with a 95 % t-interval and a simultaneous one (Bonferroni "
        "over the granularity's tests) whose standard error counts the spread over seeds, "
        "the test set's sampling noise and their interaction once each (crossed random "
        "effects, Satterthwaite df). Two tests per pair, one Holm family per granularity "
        f"(α = {alpha:g}): is the best ahead (one-sided), is it equivalent within "
        f"±{margin_pp:g} pp (TOST). A cell is **decided** (ahead of every other), "
        "**equivalent** (within the margin of every other), **partly** (some of each, or "
        "open against the rest) or **open**; an open comparison names the seeds it would "
        "need (estimated on validation). `random-matched` is random pruning with the best "
        "method's own per-layer sparsity.", "",
        f"Cells: {_counts(counts)} of {len(verdicts)}.", ""]
    return lines + _verdict_bullets(verdicts) + _comparison_table(verdicts)


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"**{n}** {label}" for label, n in counts.items())


def before_finetuning_lines(verdicts: list[dict[str, Any]]) -> list[str]:
    """The same verdicts on the pruned models before fine-tuning: one-shot accuracy, where
    a surgeon's update (OBS) should show, as fine-tuning can make up for a poor cut."""
    counts = {label: sum(v["label"] == label for v in verdicts) for label in LABELS}
    return ["", "## Verdicts before fine-tuning", "",
            "As above, on the same models right after the cut (best chosen on validation "
            "accuracy before fine-tuning; its own Holm family per granularity). Cells: "
            f"{_counts(counts)} of {len(verdicts)}.", ""
            ] + _verdict_bullets(verdicts) + _comparison_table(verdicts)


def _verdict_bullets(verdicts: list[dict[str, Any]]) -> list[str]:
    lines = []
    for v in verdicts:
        text = (f"- **{cell_label(v)}**: {v['best']} ({100 * v['best_mean']:.2f} %) — "
                f"**{v['label']}**")
        if v["label"] == "partly":
            text += "".join(f"; {name} {', '.join(v[key])}" for key, name in SETS.items()
                            if v[key])
        for control in ("random", RANDOM_MATCHED):
            c = v["comparisons"].get(control)
            if c is not None:
                diff = f"{100 * c['diff']:+.2f} pp"
                text += (f"; above {control} by {diff}" if c["ahead"]
                         else f"; not shown above {control} ({diff})")
        lines.append(text + ".")
    return lines


def _comparison_table(verdicts: list[dict[str, Any]]) -> list[str]:
    lines = ["", "| cell | best | compared with | difference (pp) [95 % CI] | simultaneous "
             "CI | p ahead (Holm) | p equivalent (Holm) | seeds for power |",
             "|---|---|---|---|---|---|---|---|"]
    for v in verdicts:
        for other, c in v["comparisons"].items():
            need = c.get("seeds_needed", "")
            lines.append(f"| {v['granularity']} {v['ratio']:g}× | {v['best']} | {other} | "
                         f"{_interval(c)} | [{100 * c['lo_adj']:+.2f}, "
                         f"{100 * c['hi_adj']:+.2f}] | {c['p_ahead_holm']:.3g} | "
                         f"{c['p_equiv_holm']:.3g} | "
                         + ("—" if other not in v["open"] else
                            "test images, not seeds" if need is None else str(need)) + " |")
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
             "estimate its magnitude, hence the second column. `obs (after its update)`: "
             "OBS's own prediction ½·w_q²/[H⁻¹]_qq against the true change when the weight "
             "is removed and its row updated as OBS updates it (the claim OBS makes; its "
             "`obs` row is its cut's rank against removal without the update).", "",
             *oracle_table(quality), "",
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


def report(model: str, rows: list[dict[str, Any]], answer: list[str],
           verdicts: list[dict[str, Any]], before: list[dict[str, Any]], paper_text: str,
           baseline: tuple[float, float], seeds: list[int], figures: dict[str, str],
           settings: str, margin_pp: float, alpha: float,
           ablations: list[tuple[list[dict[str, Any]], list[dict[str, Any]]]]) -> str:
    """reports/report.md: the answer (`answer_lines`), the verdicts, the table, the
    figures, the paper check."""
    lines = [f"# Pruning criteria compared on `{model}`", "",
             f"Baseline test accuracy {_pct(*baseline, len(seeds))} % (mean ± sample sd "
             f"over seeds {seeds}; with one seed, no sd). {settings}", ""]
    lines += answer + verdict_lines(verdicts, margin_pp, alpha)
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
