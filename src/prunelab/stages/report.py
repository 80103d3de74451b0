"""`prunelab report`: the sweep's summary table (CSV + JSON metrics), DVC plot series, PNG
figures, the paper check and reports/report.md, and one MLflow comparison run holding the
table and the figures."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from prunelab.analysis import papers
from prunelab.analysis.contrasts import contrast, differences, in_rounds, primary
from prunelab.analysis.stats import headline, infeasible, mean_sd, summarize
from prunelab.analysis.verdicts import LABELS, verdicts
from prunelab.analysis.when import at_init
from prunelab.config import Config, QuestionConfig, ReportConfig
from prunelab.errors import PrunelabError
from prunelab.methods import key, pairs, registry
from prunelab.oracle.single import SCATTER, read_scatter
from prunelab.plumbing import tracking
from prunelab.plumbing.fileio import atomic_dir, read_json, write_bytes, write_json
from prunelab.records import feasible, read_choice, read_points, sweep_series
from prunelab.report import figures as report
from prunelab.report import markdown
from prunelab.report.answer import answer_lines, in_rounds_lines, sentences
from prunelab.report.style import looks
from prunelab.report.when import section as when_section

FIGURES = {"difference from each reference": "figures/difference.png",
           "accuracy vs compression": "figures/accuracy_vs_compression.png",
           "accuracy vs effective FLOPs": "figures/accuracy_vs_flops.png",
           "per-layer sparsity (searched, after fine-tuning)": "figures/layer_sparsity.png",
           "sets against the greedy oracle": "figures/set_oracle.png",
           "scores against the true damage": "figures/oracle_scatter.png"}


def read_inputs(cfg: Config, dirs: dict[str, Path], oracle: Path) -> dict[str, Any]:
    """Every input, checked before any work and read once: per series, the sweep points and
    the search, prune and finetune records (keyed like `dirs`), and the oracle's table.
    The sweep's iterative series (`sweep.iterative_rounds`) apart: only their own
    section compares them, with their method's main series."""
    series = [key(m, g) for m, g in pairs(cfg)]
    swept = [x.name for x in sweep_series(cfg)]  # the methods', the controls', iterative
    sets = oracle.parent / "sets.json"  # the oracle stage writes all three
    missing = [str(d / f"{s}.json") for name, d in dirs.items()
               for s in (swept if name == "sweep" else series)
               if not (d / f"{s}.json").is_file()] + [
        str(f) for f in (oracle, sets, oracle.parent / SCATTER) if not f.is_file()]
    if missing:
        raise PrunelabError(f"missing input(s) {missing}; run `dvc repro` (the search, prune, "
                            "sweep and oracle stages write them)")
    read: dict[str, Any] = {name: {s: read_json(d / f"{s}.json") for s in series}
                            for name, d in dirs.items() if name not in ("search", "sweep")}
    read["search"] = {s: read_choice(dirs["search"] / f"{s}.json") for s in series}
    for part, iterative in (("points", False), ("in_rounds", True)):
        read[part] = [p for x in sweep_series(cfg) if x.iterative == iterative
                     for p in read_points(dirs["sweep"] / f"{x.name}.json")]
    read["oracle"], read["sets"] = read_json(oracle), read_json(sets)
    read["scatter"] = read_scatter(oracle.parent / SCATTER)
    return read


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    """Every key of any row, in first-seen order (only some rows have the matched control)."""
    return list(dict.fromkeys(k for r in rows for k in r))


def _csv(rows: list[dict[str, Any]]) -> bytes:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=_columns(rows), restval="")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue().encode()


def ablation_pairs(cfg: Config) -> list[tuple[str, str]]:
    """(criterion, its ablation) for each registered ablation the run prunes with the
    criterion it ablates (obs, obs-noupdate)."""
    regs = registry(cfg)
    return [(r.ablation_of, m) for m in cfg.prune.methods
            if (r := regs[m]).ablation_of in cfg.prune.methods and r.ablation_of]


def preregistration(plan: str | None, root: Path) -> str | None:
    """How the report names the plan that pre-registered its questions (`report.plan`):
    "`<path>` (commit <hash> of <date>)", the last commit that touched it; None for none.
    A plan that is not committed, or edited since, pre-registers nothing: refused."""
    if plan is None:
        return None
    import subprocess

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("log", "-1", "--format=%h of %cs", "--", plan)
    if not (root / plan).is_file() or not commit or git("status", "--porcelain", "--", plan):
        raise PrunelabError(f"report.plan {plan!r} is missing, not committed in Git, or edited "
                            "since its commit: a plan pre-registers only what its commit "
                            "fixed; commit it before the run, or set report.plan: null")
    return f"`{plan}` (commit {commit}), committed before this run's data existed"


def confirmation(cfg: Config, registered: str | None, out: Path
                 ) -> tuple[str, dict[str, str]]:
    """Where the confirmatory report is, and its one-sentence answers by question
    (`report.confirmation`, relative to the report's folder `out`), for an exploratory report
    to quote; none for the confirmatory run itself or before its report is committed."""
    link = cfg.report.confirmation
    path = out / link if link else None
    if registered or path is None or not path.is_file():
        return "", {}
    return link or "", sentences(path.read_text())


def scope(cfg: Config, registered: str | None) -> str:
    """Where the one-sentence answer holds: model, range, budget, seeds."""
    return (f"On `{cfg.model}`, after {cfg.finetune.epochs} epoch(s) of fine-tuning, over "
            f"{len(cfg.sweep.seeds)} seeds ({'pre-registered' if registered else 'exploratory'}"
            "), on the area under test accuracy over log₂ of the ratio (1/r of the prunable "
            "weights or hidden units kept)")


def area_ratios(cfg: Config) -> dict[str, list[float]]:
    """Per granularity, the ratios its questions' area runs over (`report.area_up_to`)."""
    cap = cfg.report.area_up_to
    return {g: [r for r in cfg.sweep.ratios if (top := cap.get(g)) is None or r <= top]
            for g in cfg.prune.granularities}


def _margin(rc: ReportConfig, q: QuestionConfig) -> float:
    return q.equivalence_margin_pp or rc.equivalence_margin_pp


def _families(cfg: Config) -> str:
    """The run's methods by what they read (each registration's family)."""
    regs = registry(cfg)
    by: dict[str, list[str]] = {}
    for m in sorted(cfg.prune.methods):
        family = regs[m].family
        by.setdefault("nothing (a control)" if family == "none" else family, []).append(f"`{m}`")
    return "Methods by what they read: " + "; ".join(
        f"{family} — {', '.join(ms)}" for family, ms in by.items()) + "."


def layer_names(model: str) -> dict[str, str]:
    """{"body.2.weight": "fc1", ...}: each weighted layer's parameter by the name a reader
    knows (conv1, conv2, fc1, ...), in the model's order."""
    from torch import nn

    from prunelab.models import build_model, weighted_layers

    count = {"conv": 0, "fc": 0}
    out = {}
    for name, module in weighted_layers(build_model(model)):
        kind = "conv" if isinstance(module, nn.Conv2d) else "fc"
        count[kind] += 1
        out[f"{name}.weight"] = f"{kind}{count[kind]}"
    return out


def write_metrics(out: Path, answers: dict[str, Any], finetuned: dict[str, Any],
                  baseline_accuracy: float) -> None:
    """What `dvc metrics show` lists, shaped for it (one row per file, one column per key
    of any file): `metrics/<method>-<granularity>.json` with the searched operating point's
    realised compression and test accuracy after fine-tuning (`dense.json`: the baseline),
    and `answer/<granularity>-<method>-vs-<reference>.json` with each primary contrast's
    area difference (pp) and label (`ahead-within` for "ahead, within the margin", and so
    on; a second question's files start with its name). Four keys in all, so the table
    fits 100 columns; the detail is in headline.json."""
    with atomic_dir(out / "metrics") as tmp:
        write_json(tmp / "dense.json", {"ratio": 1.0, "acc": baseline_accuracy})
        for series, m in finetuned.items():
            write_json(tmp / f"{series}.json", {"ratio": round(m["compression_ratio"], 2),
                                                "acc": m["test_accuracy"]})
    with atomic_dir(out / "answer") as tmp:
        for i, (name, (_, found)) in enumerate(answers.items()):
            for c in found:
                write_json(tmp / (("" if i == 0 else f"{name}-") + f"{c['granularity']}-"
                                  f"{c['method']}-vs-{c['other']}.json"),
                           {"diff_pp": round(100 * c["diff"], 3), "label": c["answer"]
                            .replace(", within the margin", "-within")
                            .replace(" beyond the margin", "-beyond")})  # 13 wide at most


def first_differences(cfg: Config, points: list[Any]) -> list[dict[str, Any]]:
    """The first question's `differences` per ratio (none without a question)."""
    rc = cfg.report
    if not rc.questions:
        return []
    q = rc.questions[0]
    return differences(points, q.criteria, q.references, _margin(rc, q) / 100,
                       q.alpha or rc.alpha)


def draw(cfg: Config, rows: list[dict[str, Any]], inputs: dict[str, Any],
         diffs: list[dict[str, Any]]) -> dict[str, Any]:
    """Every figure of the report, by its path under the report folder; one look per
    method (`style.looks`) in all of them. `diffs`: the first question's `differences`."""
    style = looks(registry(cfg))
    first = {FIGURES["difference from each reference"]: report.difference_figure(
        diffs, style, _margin(cfg.report, cfg.report.questions[0]))} if diffs else {}
    return {
        **first,
        FIGURES["accuracy vs compression"]: report.curves_figure(
            rows, "compression_ratio", style),
        FIGURES["accuracy vs effective FLOPs"]: report.curves_figure(
            rows, "effective_flops", style),
        FIGURES["per-layer sparsity (searched, after fine-tuning)"]:
            report.layer_sparsity_figure(inputs["finetune"], layer_names(cfg.model)),
        **({FIGURES["sets against the greedy oracle"]: report.set_oracle_figure(
            inputs["sets"], style),
            FIGURES["scores against the true damage"]: report.oracle_figure(inputs["scatter"])}
           if inputs["oracle"] else {}),  # empty: oracle.enabled is false
    }


def when_text(cfg: Config, when_points: Path) -> str:
    """The "When to prune" section from `prunelab when`'s points ("" when it computed none:
    `when.enabled` false)."""
    if not when_points.is_file():
        raise PrunelabError(f"missing input {when_points}; run `dvc repro` (the when stage "
                            "writes it, empty while when.enabled is false)")
    points = read_json(when_points)["points"]
    if not points:
        return ""
    rc, q = cfg.report, cfg.when.question
    found = at_init(points, q.criteria, q.references, cfg.when.ratios, _margin(rc, q) / 100,
                    q.alpha or rc.alpha, rc.power, rc.power_assurance)
    return when_section(points, found, q.ask, points[0]["epochs"],
                        cfg.train.epochs + cfg.finetune.epochs, cfg.sweep.seeds,
                        _margin(rc, q), q.alpha or rc.alpha)


def run(cfg: Config, sweep_dir: Path, search_dir: Path, prune_dir: Path, finetune_dir: Path,
        oracle: Path, when_points: Path, out: Path) -> None:
    registered = preregistration(cfg.report.plan, Path.cwd())  # before any work
    link, confirmed = confirmation(cfg, registered, out)
    at_init_text = when_text(cfg, when_points)
    inputs = read_inputs(cfg, {"sweep": sweep_dir, "search": search_dir, "prune": prune_dir,
                           "finetune": finetune_dir}, oracle)
    points, quality = inputs["points"], inputs["oracle"]
    tracking.configure(cfg.mlflow)
    import mlflow

    rows = summarize(points)
    rc = cfg.report
    margin = rc.equivalence_margin_pp / 100
    verdict = verdicts(points, margin, rc.alpha, rc.power, assurance=rc.power_assurance)
    labels = {label: sum(v["label"] == label for v in verdict) for label in LABELS}
    # Each question its own Holm family per granularity: another question's contrasts
    # leave its numbers as they are.
    answers = {q.name: (q, primary(points, q.criteria, q.references, area_ratios(cfg),
                                   _margin(rc, q) / 100, q.alpha or rc.alpha, rc.power,
                                   rc.power_assurance))
               for q in rc.questions}
    rounds = in_rounds(points, inputs["in_rounds"], cfg.sweep.ratios, margin, rc.alpha)
    # Every seed's baseline, from its feasible points (an infeasible one carries no accuracy).
    base_by_seed = {p["seed"]: p["baseline_test_accuracy"] for p in feasible(points)}
    baseline = mean_sd(list(base_by_seed.values()))
    if cfg.model in papers.PAPERS:
        paper_text = markdown.han_section(
            "Magnitude pruning of weights in this run's sweep (its params; for the held-out "
            "check see `papers/`).",
            papers.han_judgement(cfg.model, papers.rows_from_points(points)))
    else:
        paper_text = (f"The published tables cover `lenet300` and `lenet5`, not `{cfg.model}`; "
                      "see `papers/` and the README for the held-out LeNet check.")
    ft = cfg.finetune
    settings = (f"Fine-tuning: {ft.epochs} epoch(s) at lr {ft.lr:g}, "
                f"{ft.rounds} prune round(s); scope {cfg.prune.scope}, normalised scores "
                f"{cfg.prune.normalize}, output layer pruned {cfg.prune.prune_output_layer}."
                f" {_families(cfg)}")

    write_bytes(out / "summary.csv", _csv(rows))
    # Every point's numbers (not which images it gets right: 1 bit an image, 3 MB a run,
    # too much for Git at every rerun; those stay in sweep/*.json, DVC's cache), so any
    # number of the table can be checked in a clone without rerunning the sweep.
    write_bytes(out / "points.csv", _csv([
        {k: v for k, v in pt.items() if isinstance(v, (int, float, str)) and "correct" not in k}
        for pt in sorted([*points, *inputs["in_rounds"]],
                         key=lambda q: (q["method"], q["granularity"], q["rounds"],
                                        q["ratio"], q["seed"]))]))
    # DVC metrics: series -> ratio -> mean and sd of every measured quantity.
    nested: dict[str, Any] = {"baseline_test_accuracy": baseline[0],
                              "baseline_test_accuracy_sd": baseline[1],
                              "cells": {"all": len(verdict), **labels}}
    for r in rows:
        nested.setdefault(report.series_name(r), {})[f"r{r['ratio']:g}"] = {
            k: v for k, v in r.items() if isinstance(v, (int, float)) and k != "ratio"}
    write_json(out / "summary.json", nested)
    write_json(out / "headline.json", {
        "baseline_test_accuracy": baseline[0], "cells": labels,
        # The answer, for `dvc exp show`/`dvc metrics diff`: each primary contrast's area
        # difference (pp) and what it says.
        "questions": {name: {f"{c['granularity']}/{c['method']}-vs-{c['other']}": {
            "area_diff_pp": 100 * c["diff"], "answer": c["answer"]} for c in found}
            for name, (_, found) in answers.items()},
        # In rounds minus one-shot, where `sweep.iterative_rounds` swept it.
        **({"in_rounds": {f"{c['granularity']}/{c['method']}-{c['rounds']}rounds": {
            "area_diff_pp": 100 * c["diff"], "answer": c["answer"]} for c in rounds}}
           if rounds else {}),
        **headline(rows, inputs["search"], inputs["finetune"],
                   cfg.search.max_accuracy_drop, inputs["sets"])})
    write_metrics(out, answers, inputs["finetune"], base_by_seed.get(cfg.seed, baseline[0]))
    for x in report.X_AXES:
        for y, stage in (("test_accuracy", "after"), ("test_accuracy_before", "before")):
            write_json(out / "plots" / f"{stage}_vs_{x.split('_')[-1]}.json",
                       report.curve_records(rows, x, y))
    diffs = first_differences(cfg, points)
    write_json(out / "plots" / "difference_vs_ratio.json", report.difference_records(diffs))
    figs = draw(cfg, rows, inputs, diffs)
    params = {"model": cfg.model, "ratios": str(cfg.sweep.ratios),
              "seeds": str(cfg.sweep.seeds), "finetune.epochs": ft.epochs,
              "finetune.lr": ft.lr, "rounds": ft.rounds}
    with tracking.stage_run(f"{cfg.model}-sweep", "comparison", {"stage": "report"}, params):
        mlflow.log_table({k: [r.get(k) for r in rows] for k in _columns(rows)}, "summary.json")
        for path, fig in figs.items():
            mlflow.log_figure(fig, path)
            report.save_figure(fig, out / path)
        ablations = [(contrast(points, m, o, margin, stage="_before"),
                      contrast(points, m, o, margin)) for m, o in ablation_pairs(cfg)]
        answer_text = []
        for i, (q, found) in enumerate(answers.values()):
            quote = confirmed.get("" if i == 0 else q.name)
            answer_text += answer_lines(found, q.ask, q.name, i == 0, _margin(rc, q),
                                        q.alpha or rc.alpha, rc.power, registered,
                                        scope(cfg, registered),
                                        (link, quote) if quote else None)
        text = markdown.report(
            cfg.model, rows,
            answer_text,
            verdict, verdicts(points, margin, rc.alpha, rc.power, stage="_before",
                                       assurance=rc.power_assurance),
            paper_text, baseline, cfg.sweep.seeds,
            {title: path for title, path in FIGURES.items() if path in figs
             and title != "scores against the true damage"}, settings,
            rc.equivalence_margin_pp, rc.alpha, ablations)
        text += "".join(f"{line}\n" for line in in_rounds_lines(
            rounds, ft.epochs, rc.equivalence_margin_pp, rc.alpha))
        if quality:  # empty: oracle.enabled is false
            text += markdown.oracle_section(quality, FIGURES["scores against the true damage"],
                                            cfg.oracle.examples)
            text += markdown.set_oracle_section(
                inputs["sets"], FIGURES["sets against the greedy oracle"], quality)
        else:
            text += ("\n## Criterion quality against the true damage\n\nNot measured in this "
                     "run (`oracle.enabled: false`).\n")
        text += at_init_text
        text += markdown.infeasible_section(infeasible(points))
        write_bytes(out / "report.md", text.encode())
        mlflow.log_artifact(str(out / "report.md"))
        mlflow.log_metrics({"baseline_test_accuracy": baseline[0]})
    print(f"report: {out / 'report.md'} ({len(rows)} rows over {len(cfg.sweep.seeds)} seeds)")
