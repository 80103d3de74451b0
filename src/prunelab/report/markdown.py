"""The report's Markdown: reports/report.md around its answer and verdicts (those are
`answer`'s), the table, the criterion-quality section, the unrealised points, and
the check against the papers (also `papers/*.md`). Numbers in, text out: no files, DVC or
MLflow here."""

from __future__ import annotations

import statistics
from typing import Any

from prunelab.methods import key
from prunelab.oracle.weight_sets import BLOCK
from prunelab.records import CONTROLS, InfeasiblePoint
from prunelab.report.answer import ablation_lines, before_finetuning_lines, verdict_lines


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


def oracle_section(quality: dict[str, Any], figure: str, examples: int) -> str:
    """The criterion-quality table and scatter plot (`figure`, a path relative to the
    report), as a Markdown section."""
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
             f"![score vs true damage, first seed]({figure})", ""]
    return "\n".join(lines)


def set_oracle_section(sets: dict[str, Any], figure: str, quality: dict[str, Any]) -> str:
    """The set-level oracles (`unit_sets`, `weight_sets`): per criterion and ratio, the
    held-out accuracy with its whole set removed (no fine-tuning), its gap to the greedy
    oracle's set and precision@k (mean over seeds); and the single-removal oracle's
    reliability."""
    lines = ["", "## Criterion quality by whole sets", "",
             "Each criterion's set at each ratio removed at once, no fine-tuning, against "
             "the greedy oracle's set of the same size. The greedy oracle chooses on one "
             "half of the held-out validation images; every set is scored on the other "
             "half. Accuracy in %, then the criterion's minus the greedy's in pp (positive: "
             "the criterion's set keeps more), precision@k: the share of the criterion's "
             "set the greedy set also holds (random's is the reference); mean over seeds. "
             "Each set is removed as it is ranked, with no update of what is left (so "
             "`obs` and `obs-noupdate` coincide), and `gmp` and `movement` by their score "
             "on the baseline, not the cut they reach while fine-tuning.", "",
             "**Units**: the bottom 1 − 1/r of every hidden layer's units; the greedy "
             "removes one unit at a time, each the one whose removal, given those already "
             "removed, raises the loss least.", "", *_set_table(sets["sets"]), "",
             *_two_oracles("neuron", sets["sets"], quality)]
    if "weight_sets" in sets:
        lines += ["", "**Weights**: the bottom 1 − 1/r of the pruned layer's weights; the "
                  f"greedy removes them in blocks, each the {100 * BLOCK:g} % of the "
                  "remaining weights whose removal alone, given those already removed, "
                  "changes the loss least (|Δloss|, Molchanov et al.'s oracle; "
                  "`prunelab.oracle.weight_sets`). It is no upper bound: a criterion's set can "
                  "keep more than the greedy's.", "",
                  *_set_table(sets["weight_sets"]), "",
                  *_two_oracles("weight", sets["weight_sets"], quality)]
    rel = ", ".join(f"{layer} {r['mean']:.2f} ± {r['sd']:.2f} (full length "
                    f"{2 * r['mean'] / (1 + r['mean']):.2f})"
                    for layer, r in sets["reliability"].items())
    lines += ["", "The single-removal unit table above ranks each unit by its damage alone; "
              "its split-half reliability (Spearman ρ between the damages measured on the "
              f"two halves of the held-out images, mean ± sd over seeds): {rel}, the full "
              "length by Spearman–Brown. A criterion's ρ with that oracle cannot exceed "
              "about the square root of its full-length reliability.", "",
              f"![set-level accuracy against ratio]({figure})", ""]
    return "\n".join(lines)


def _two_oracles(granularity: str, by_method: dict[str, Any],
                 quality: dict[str, Any]) -> list[str]:
    """One line: which criterion each oracle ranks first (random and the greedy aside)."""
    def rho(method: str) -> float:
        layers = quality.get(method, {}).get(granularity, {}).values()
        return statistics.fmean(q["spearman_abs"]["mean"] for q in layers) if layers else -2.0

    def kept(method: str) -> float:
        return statistics.fmean(c["accuracy"]["mean"] for c in by_method[method].values())

    methods = [m for m in by_method if m not in ("greedy", "random")]
    if not methods:
        return []
    by_rho, by_set = max(methods, key=rho), max(methods, key=kept)
    return [f"The two oracles rank the {granularity} criteria "
            + ("alike" if by_rho == by_set else "differently")
            + f": by single removals (ρ with |Δloss|, mean over layers) `{by_rho}` ranks "
            f"first ({rho(by_rho):.2f}); by whole sets (held-out accuracy with its set "
            f"removed, mean over the ratios) `{by_set}` keeps the most "
            f"({100 * kept(by_set):.1f} %, `{by_rho}` {100 * kept(by_rho):.1f} %)."
            + (" What a criterion must get right is the set the sweep cuts: the single-"
               "removal table is secondary." if by_rho != by_set else "")]


def _set_table(by_method: dict[str, Any]) -> list[str]:
    ratios = sorted(by_method["greedy"], key=lambda r: float(r[1:]))  # "r2", "r4", ...
    lines = ["| criterion | " + " | ".join(f"{r[1:]}×" for r in ratios) + " |",
             "|---|" + "---|" * len(ratios)]
    for method, cells in by_method.items():
        lines.append(f"| {method} | " + " | ".join(
            f"{100 * c['accuracy']['mean']:.1f}" + (
                "" if method == "greedy" else f" ({-c['accuracy_gap_pp']['mean']:+.1f}, "
                f"p@k {c['precision_at_k']['mean']:.2f})")
            for c in (cells[r] for r in ratios)) + " |")
    return lines


def infeasible_section(points: list[InfeasiblePoint]) -> str:
    if not points:
        return ""
    lines = ["", "## Points that could not be realised", ""]
    lines += [f"- {key(p['method'], p['granularity'])}, ratio {p['ratio']:g}, seed {p['seed']}: "
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
              "parameters. Drops are against the seed's baseline, and against `dense+ft` "
              "(the baseline fine-tuned exactly as the pruned models: what pruning costs "
              "beyond the extra training); `scratch` is the pruned widths trained from "
              "scratch for the same epochs.", "",
              "| method | granularity | ratio | compression | sparsity | effective MFLOPs "
              "| test acc before FT | test acc after FT | drop (pp) | drop vs dense+ft (pp) "
              "| random-matched after FT |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['granularity']} | {r['ratio']:g} | "
            f"{r['compression_ratio']:.1f}× | {100 * r['sparsity']:.1f} % | "
            f"{r['effective_flops'] / 1e6:.3f} | "
            + (_pct(r["test_accuracy_before"], r["test_accuracy_before_sd"], r["seeds"])
               if "test_accuracy_before" in r else "— (a control)" if r["method"] in CONTROLS
               else "— (cut while fine-tuning)") + " | "
            f"{_pct(r['test_accuracy'], r['test_accuracy_sd'], r['seeds'])} | "
            f"{_pct(r['test_accuracy_drop'], r['test_accuracy_drop_sd'], r['seeds'])} | "
            + (_pct(r["drop_vs_dense_ft"], r["drop_vs_dense_ft_sd"], r["seeds"])
               if "drop_vs_dense_ft" in r else "—") + " | "
            + (_pct(r["test_accuracy_matched_random"], r["test_accuracy_matched_random_sd"],
                    r["seeds"]) if "test_accuracy_matched_random" in r else "—") + " |")
    lines += ["", "## Figures", ""]
    lines += [f"![{title}]({path})" for title, path in figures.items()]
    lines += ["", "## Check against the papers", "", paper_text]
    return "\n".join(lines) + "\n"


def han_section(intro: str, checks: list[dict[str, Any]]) -> str:
    """Both judgements for every published row, after `intro` (where the runs come from)."""
    lines = [intro + " Errors in %, mean ± sd over seeds; change = pruned error − the same "
             "seed's baseline error, with a 95 % interval: over seeds × test images "
             "(`stats.crossed_se`, the test set's noise counted) where each image's outcome "
             "was kept, else over seeds alone. Ours − theirs counts their single run's noise "
             "too (one run's change on the same 10k images, its variance estimated from our "
             "seeds); the verdict is \"worse\" or \"better\" only where that interval "
             "excludes 0, and is given only with each image's outcome.", "",
             "| paper | their error | their change | ours at | our error | our change "
             "[95 % CI] | ours − theirs [95 % CI] | within 0.15 pp (absolute) | "
             "change vs theirs |",
             "|---|---|---|---|---|---|---|---|---|"]
    for c in checks:
        theirs = (f"{c['base_error']:.2f} → " if c["base_error"] is not None else "") + \
            f"{c['error']:.2f} at {c['ratio']:g}×"
        if c["match"] is None:
            lines.append(f"| {c['paper']} ({c.get('note', c['kind'])}) | {theirs} | — | "
                         "no matching point | — | — | — | — | — |")
            continue
        mean, lo, hi = c["our_change"]
        vs = "—" if "vs_theirs" not in c else \
            "{:+.2f} [{:+.2f}, {:+.2f}]".format(*c["vs_theirs"])
        lines.append(
            f"| {c['paper']} ({c.get('note', c['kind'])}) | {theirs} | "
            + (f"{c['their_change']:+.2f}" if "their_change" in c else "—")
            + f" | {c['our_ratio']:.1f}× | {c['our_base_error'][0]:.2f} → "
            f"{c['our_error'][0]:.2f} ± {c['our_error'][1]:.2f} | {mean:+.2f} "
            f"[{lo:+.2f}, {hi:+.2f}] | {vs} | "
            + {True: "yes", False: "no", None: "—"}[c.get("within_tolerance")]
            + f" | {c.get('change_verdict', '—')} |")
    return "\n".join(lines) + "\n"
