"""The Markdown of the answer and the verdicts: the primary contrasts that open
reports/report.md, each cell's label with its comparisons (after and before fine-tuning),
and the ablation tables. Numbers in, text out."""

from __future__ import annotations

from typing import Any

from prunelab.analysis.contrasts import ANSWERS
from prunelab.analysis.verdicts import LABELS, RANDOM_MATCHED


def cell_label(v: dict[str, Any]) -> str:
    return (f"{v['granularity']}, {v['ratio']:g}× (realised {v['compression']:.1f}× of all "
            f"parameters, methods within {100 * v['compression_spread']:.1f} %)")


SETS = {"ahead": "ahead of", "equivalent": "equivalent to", "open": "open against"}


# How an answer reads in the one-sentence summary: "<criteria> <phrase> <reference>".
PHRASES = {"ahead beyond the margin": "ahead of {} by more than the margin",
           "ahead, within the margin": "ahead of {}, within the margin",
           "ahead": "ahead of {}", "equivalent": "equivalent to {}",
           "behind, within the margin": "behind {}, within the margin",
           "behind beyond the margin": "behind {} by more than the margin",
           "behind": "behind {}", "open": "not told apart from {}"}
GRANULARITIES = {"weight": "as sparse weights", "neuron": "as smaller dense models (neurons)"}


def _names(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def answer_sentence(primary: list[dict[str, Any]], scope: str) -> str:
    """The answer in one sentence a reader can quote, from the contrasts' labels: per
    granularity (and the range its area runs over) and reference, the criteria grouped by
    what their answer says. `scope` says where it holds (model, budget, seeds, and whether
    it was pre-registered)."""
    parts = []
    for granularity in dict.fromkeys(c["granularity"] for c in primary):
        mine = [c for c in primary if c["granularity"] == granularity]
        clauses = []
        for ref in dict.fromkeys(c["other"] for c in mine):
            groups = {a: [f"`{c['method']}`" for c in mine if c["other"] == ref
                          and c["answer"] == a] for a in ANSWERS}
            clauses += [f"{_names(g)} {'is' if len(g) == 1 else 'are'} "
                        + PHRASES[a].format(f"`{ref}`") for a, g in groups.items() if g]
        r = mine[0]["ratios"]
        parts.append(f"{GRANULARITIES.get(granularity, granularity)} from {r[0]:g}× to "
                     f"{r[-1]:g}×, " + "; ".join(clauses))
    return f"{scope}: " + "; and ".join(parts) + "."


SENTENCE = "**In one sentence**: "


def sentences(report_md: str) -> dict[str, str]:
    """A report's one-sentence answers by question (`answer_lines`' sections: "The answer"
    is the first question's, keyed ""; "Question `x`" is x's), for another report to quote."""
    out, section = {}, None
    for line in report_md.splitlines():
        if line == "## The answer":
            section = ""
        elif line.startswith("## Question `"):
            section = line.removeprefix("## Question `").rstrip("`")
        elif line.startswith("## "):
            section = None
        elif section is not None and line.startswith(SENTENCE):
            out[section] = line.removeprefix(SENTENCE)
    return out


def answer_lines(primary: list[dict[str, Any]], ask: str, name: str, first: bool,
                 margin_pp: float, alpha: float, power: float,
                 registered: str | None = None, scope: str = "",
                 confirmed: tuple[str, str] | None = None) -> list[str]:
    """One question's section (the first opens the report as "The answer", its one-sentence
    summary first), answered by its contrasts: `ask` is the question as params.yaml words it
    (`report.questions`); `registered` the plan that fixed it before the data existed
    (`report.plan`), None for an exploratory analysis; `scope` the sentence's opening;
    `confirmed` (where the confirmatory report is, its sentence for this question), quoted
    first in an exploratory report."""
    status = (f"pre-registered in {registered}" if registered else
              "exploratory: named in params.yaml, not fixed by a plan committed before "
              "the data existed (`report.plan`)")
    lines = ["## The answer" if first else f"## Question `{name}`", ""]
    if confirmed:
        lines += [f"**Confirmed** (the pre-registered run, [{confirmed[0]}]({confirmed[0]})): "
                  f"{confirmed[1]}", "", "The rest of this section is this run's own "
                  "analysis, exploratory:", ""]
    if primary:
        lines += [f"{SENTENCE}{answer_sentence(primary, scope)}", ""]
    lines += [f"{ask} Each of the question's criteria against each reference, on the area "
              "under its test-accuracy curve over log₂ compression (the whole sweep, one "
              "number per seed, in pp of accuracy), as params.yaml's `report.questions` "
              f"(`{name}`) names them ({status}); one-sided (the criterion ahead), Holm "
              "within a granularity and this question at "
              f"α = {alpha:g}; beside it the reverse direction and equivalence within "
              f"±{margin_pp:g} pp (TOST), Holm in a family of their own. Intervals are "
              "simultaneous (Bonferroni) over the granularity's contrasts; the seeds are "
              f"those {100 * power:.0f} % power at the margin would need, estimated on "
              "validation images. Each answer keeps both findings: **ahead** or **behind** "
              "where the difference is significantly non-zero, with **within the margin** "
              f"where TOST also shows it inside ±{margin_pp:g} pp and **beyond the margin** "
              f"where its simultaneous interval lies wholly past ±{margin_pp:g} pp; "
              "**equivalent** where only TOST rejects; **open** where neither test does.",
              ""]
    for granularity in dict.fromkeys(c["granularity"] for c in primary):
        mine = [c for c in primary if c["granularity"] == granularity]
        groups = {a: [f"{c['method']} vs {c['other']}" for c in mine if c["answer"] == a]
                  for a in ANSWERS}
        summary = "; ".join(f"{a}: {', '.join(g)}" for a, g in groups.items() if g)
        lines.append(f"**{granularity} granularity** — {summary}.")
        lines.append("")
        lines += [contrast_line(c) for c in mine]
        lines.append("")
    return lines


def contrast_line(c: dict[str, Any]) -> str:
    """One primary contrast as a bullet: the difference, its simultaneous interval, the
    three Holm p-values, the answer and the seeds its power needs."""
    need = c.get("seeds_needed")
    return (f"- `{c['method']}` vs `{c['other']}`: {100 * c['diff']:+.2f} pp "
            f"[{100 * c['lo_adj']:+.2f}, {100 * c['hi_adj']:+.2f}] over {c['seeds']} "
            f"seeds; ahead p = {c['p_ahead_holm']:.3g}, behind p = "
            f"{c['p_behind_holm']:.3g}, equivalent p = {c['p_equiv_holm']:.3g} (Holm) — "
            f"**{c['answer']}**; power needs "
            + ("more test images than seeds can make up" if need is None
               else f"{need} seeds") + ".")


def verdict_lines(verdicts: list[dict[str, Any]], margin_pp: float, alpha: float) -> list[str]:
    counts = {label: sum(v["label"] == label for v in verdicts) for label in LABELS}
    lines = [
        "## Verdicts after fine-tuning", "",
        "Per cell, the best method by mean validation accuracy after fine-tuning (shown with "
        "its test accuracy), compared on test with every other method on the same seeds and "
        "images: the difference with a 95 % t-interval and a simultaneous one (Bonferroni "
        "over the cell's tests) whose standard error counts the spread over seeds, "
        "the test set's sampling noise and their interaction once each (crossed random "
        "effects, Satterthwaite df). Two tests per pair, one Holm family per cell (its "
        "best against each other method and control; the cell's question is which method "
        f"is best there; α = {alpha:g}): is the best ahead (one-sided), is it equivalent within "
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
            "accuracy before fine-tuning; one Holm family per cell, as above). Cells: "
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


def in_rounds_lines(contrasts: list[dict[str, Any]], budget: int, margin_pp: float,
                    alpha: float) -> list[str]:
    """The one-shot against in-rounds table (`contrasts.in_rounds`); none without it."""
    if not contrasts:
        return []
    lines = ["", "## One-shot or in rounds, at the same fine-tuning budget", "",
             "Each method that cuts before fine-tuning, pruned in k rounds (each cutting an "
             "equal fraction of what remains, then fine-tuning for its share of the "
             f"{budget} epoch(s)) against the same method pruned once and fine-tuned for all "
             "of them: the first-order papers prune a little at a time (Molchanov et al. "
             "2017), which the main table does not. Area under the test-accuracy curve "
             "(as the answer's), paired on seeds and test images; two-sided, Holm within a "
             f"granularity at α = {alpha:g}; equivalence within ±{margin_pp:g} pp (TOST), "
             "Holm in a family of its own. Positive: rounds help.", "",
             "| granularity | method | rounds | area one-shot (%) | area in rounds (%) "
             "| difference (pp) [95 % CI] | p (Holm) | equivalent p (Holm) | answer |",
             "|---|---|---|---|---|---|---|---|---|"]
    for c in sorted(contrasts, key=lambda c: (c["granularity"] != "weight", c["granularity"],
                                               -c["diff"], c["method"], c["rounds"])):
        lines.append(f"| {c['granularity']} | `{c['method']}` | {c['rounds']} | "
                     f"{100 * c['area_one_shot']:.2f} | {100 * c['area']:.2f} | "
                     f"{_interval(c)} | {c['p_holm']:.3g} | {c['p_equiv_holm']:.3g} | "
                     f"**{c['answer']}** |")
    return lines
