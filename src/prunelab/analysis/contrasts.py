"""Contrasts between two named methods, named in params.yaml (`report`) before the report
reads any test outcome. Fixed by a plan committed before their data existed
(`report.plan`) they are confirmatory; named or revised after (as the default question
was, issue 37) they are exploratory.

- **Primary** (`primary`): the study's question — does the loss gradient tell what matters
  better than weight magnitude or neuron activity? — as one contrast per (criterion,
  reference) of params.yaml's `report` section, on a per-seed summary of the whole curve:
  the area under test accuracy against log₂ compression over the sweep's ratios up to the
  granularity's `report.area_up_to` (trapezoids, divided by the log₂ range, so it reads as
  an accuracy in pp). Each image's area is the same weighted sum of its correctness at every
  ratio, so the seed × image table of area differences has the crossed SE of
  `stats.paired_difference`. The primary test is one-sided (the criterion ahead), Holm over
  the contrasts of one granularity; beside it, its reverse and TOST at the margin, Holm in a
  family of their own, and the seeds 80 % power would need, from the same contrast on
  validation.
- **Ablations** (`contrast`): one ingredient, measured by itself, cell by cell — here
  OBS's update (`obs` against `obs-noupdate`: the same cut with and without the surgeon's
  update), before and after fine-tuning, Holm over the cells of one moment.
- **In rounds** (`in_rounds`): each method pruned in k prune/fine-tune rounds against the
  same method pruned once, at the same fine-tuning budget, on the area as the primary
  contrasts; two-sided (neither direction was pre-registered).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from prunelab.analysis.stats import holm, paired_difference, seeds_needed, simultaneous
from prunelab.analysis.verdicts import correct
from prunelab.records import Point, feasible


def _by_cell(points: Iterable[Point], methods: tuple[str, ...], key: str
             ) -> dict[tuple[str, str], dict[int, dict[float, Any]]]:
    """(granularity, method) -> seed -> ratio -> point, for points that have `key`."""
    out: dict[tuple[str, str], dict[int, dict[float, Any]]] = {}
    for p in feasible(points):
        if p["method"] in methods and key in p:
            out.setdefault((p["granularity"], p["method"]), {}).setdefault(
                p["seed"], {})[p["ratio"]] = p
    return out


def auc_weights(ratios: Iterable[float]) -> dict[float, float]:
    """Trapezoid weights over log₂ ratio, summing to 1: [2, 4, 8, 16, 32] gives
    1/8, 1/4, 1/4, 1/4, 1/8. One ratio: weight 1."""
    rs = sorted(set(ratios))
    if len(rs) == 1:
        return {rs[0]: 1.0}
    x = [math.log2(r) for r in rs]
    w = [0.0] * len(rs)
    for i in range(len(rs) - 1):
        w[i] += (x[i + 1] - x[i]) / 2
        w[i + 1] += (x[i + 1] - x[i]) / 2
    return {r: wi / (x[-1] - x[0]) for r, wi in zip(rs, w, strict=True)}


def _areas(curve: dict[float, Any], weights: dict[float, float], key: str) -> np.ndarray:
    return sum((w * correct(curve[r], key).astype(float) for r, w in weights.items()),
               start=np.zeros(1))


def primary(points: Iterable[Point], criteria: Sequence[str], references: Sequence[str],
            ratios: Mapping[str, Sequence[float]], margin: float, alpha: float, power: float,
            assurance: float | None = None) -> list[dict[str, Any]]:
    """Per granularity, each criterion's area over that granularity's `ratios` minus each
    reference's, on the seeds where both have a feasible point at every one of them (see
    the module's docstring); `assurance` as `stats.seeds_needed`'s."""
    cells = _by_cell(points, (*criteria, *references), "test_correct")
    out: list[dict[str, Any]] = []
    for granularity in sorted({g for g, _ in cells}, key=lambda g: g != "weight"):
        ladder = list(ratios[granularity])
        weights = auc_weights(ladder)
        family = []
        for crit in criteria:
            for ref in references:
                a, b = cells.get((granularity, crit), {}), cells.get((granularity, ref), {})
                seeds = [s for s in sorted(set(a) & set(b))
                         if all(r in a[s] and r in b[s] for r in weights)]
                if not seeds:
                    continue
                c = paired_difference([_areas(a[s], weights, "test_correct") for s in seeds],
                                      [_areas(b[s], weights, "test_correct") for s in seeds],
                                      margin)
                c.update(granularity=granularity, method=crit, other=ref, ratios=ladder)
                c["images"] = int(a[seeds[0]][ladder[0]]["test_images"])
                c["val"] = np.array([_areas(a[s], weights, "val_correct")
                                     - _areas(b[s], weights, "val_correct") for s in seeds])
                family.append(c)
        for c, p_adj in zip(family, holm([c["p_ahead"] for c in family]), strict=True):
            c["p_ahead_holm"] = p_adj
            c["lo_adj"], c["hi_adj"] = simultaneous(c, len(family), alpha)
            # Power of the primary test on validation (Bonferroni's level: Holm's worst).
            val = c.pop("val")
            c["seeds_needed"] = (seeds_needed(val, c.pop("images"), margin,
                                              alpha / len(family), power,
                                              assurance=assurance)
                                 if len(val) > 1 else None)
        secondary = holm([c["p_behind"] for c in family] + [c["p_equiv"] for c in family])
        for i, c in enumerate(family):
            c["p_behind_holm"], c["p_equiv_holm"] = secondary[i], secondary[len(family) + i]
            c["answer"] = answer(c, margin, alpha)
        out += family
    return out


# A primary contrast's answer keeps both of its findings: whether the difference is
# significantly non-zero (the one-sided test, or its reverse, after Holm) and where it lies
# against the margin m: "within the margin" = TOST rejects after Holm (the difference is
# shown to be inside ±m); "beyond the margin" = the simultaneous interval lies wholly
# past +m (or −m). Neither shown: the plain direction; no direction: equivalent or open.
ANSWERS = ("ahead beyond the margin", "ahead, within the margin", "ahead", "equivalent",
           "behind, within the margin", "behind beyond the margin", "behind", "open")


def answer(c: dict[str, Any], margin: float, alpha: float) -> str:
    """One of `ANSWERS` for a contrast with its Holm p-values (`p_ahead_holm`,
    `p_behind_holm`, `p_equiv_holm`) and simultaneous interval (`lo_adj`, `hi_adj`)."""
    within = c["p_equiv_holm"] < alpha
    for side, sign, bound in (("ahead", 1, c["lo_adj"]), ("behind", -1, -c["hi_adj"])):
        if c[f"p_{side}_holm"] < alpha and sign * c["diff"] > 0:
            return (f"{side} beyond the margin" if bound > margin else
                    f"{side}, within the margin" if within else side)
    return "equivalent" if within else "open"


def contrast(points: Iterable[Point], method: str, other: str, margin: float,
             stage: str = "") -> list[dict[str, Any]]:
    """Per (granularity, ratio) where both ran on the same seeds: `method` minus `other`
    on test (`stage="_before"`: right after the cut), Holm over the cells."""
    key = f"test_correct{stage}"
    cells = _by_cell(points, (method, other), key)
    out = []
    for granularity in sorted({g for g, _ in cells}, key=lambda g: g != "weight"):
        a, b = cells.get((granularity, method), {}), cells.get((granularity, other), {})
        for ratio in sorted({r for s in a for r in a[s]}):
            seeds = [s for s in sorted(set(a) & set(b)) if ratio in a[s] and ratio in b[s]]
            if seeds:
                out.append({"granularity": granularity, "ratio": ratio, "method": method,
                            "other": other, **paired_difference(
                                [correct(a[s][ratio], key) for s in seeds],
                                [correct(b[s][ratio], key) for s in seeds], margin)})
    for c, p_adj in zip(out, holm([c["p"] for c in out]), strict=True):
        c["p_holm"] = p_adj
    return out


def differences(points: Iterable[Point], criteria: Sequence[str],
                references: Sequence[str], margin: float, alpha: float
                ) -> list[dict[str, Any]]:
    """Per granularity, reference and ratio: each criterion minus the reference on test
    after fine-tuning (`contrast`), with `sim_lo`/`sim_hi`, its interval simultaneous over
    the family of every criterion × ratio against that reference at that granularity
    (Bonferroni at `alpha`, `simultaneous`): what the difference figure draws."""
    points = list(points)
    out = [{**c, "reference": ref} for ref in references for m in criteria if m != ref
           for c in contrast(points, m, ref, margin)]
    for c in out:
        family = sum(x["granularity"] == c["granularity"] and x["reference"] == c["reference"]
                     for x in out)
        c["sim_lo"], c["sim_hi"] = simultaneous(c, family, alpha)
    return out


def in_rounds(one_shot: Iterable[Point], iterative: Iterable[Point], ratios: list[float],
              margin: float, alpha: float) -> list[dict[str, Any]]:
    """Per (granularity, method, rounds) of `iterative`: its area minus the same method's
    area in `one_shot` (the main series), at the same fine-tuning budget, on the seeds
    where both have a feasible point at every ratio. No direction is pre-registered, so
    two-sided, Holm over the granularity's comparisons; TOST at the margin, Holm in a
    family of its own (as `primary`'s secondary tests)."""
    weights = auc_weights(ratios)
    iterative = list(iterative)
    out: list[dict[str, Any]] = []
    for k in sorted({p["rounds"] for p in iterative}):
        mine = [p for p in iterative if p["rounds"] == k]
        methods = tuple(dict.fromkeys(p["method"] for p in mine))
        a_cells, b_cells = _by_cell(mine, methods, "test_correct"), _by_cell(
            one_shot, methods, "test_correct")
        for (granularity, method), a in a_cells.items():
            b = b_cells.get((granularity, method), {})
            seeds = [s for s in sorted(set(a) & set(b))
                     if all(r in a[s] and r in b[s] for r in weights)]
            if not seeds:
                continue
            in_k, once = ([_areas(x[s], weights, "test_correct") for s in seeds]
                          for x in (a, b))
            c = paired_difference(in_k, once, margin)
            c.update(granularity=granularity, method=method, rounds=k,
                     area=float(np.mean([x.mean() for x in in_k])),
                     area_one_shot=float(np.mean([x.mean() for x in once])))
            out.append(c)
    for granularity in {c["granularity"] for c in out}:
        family = [c for c in out if c["granularity"] == granularity]
        for c, p, p_equiv in zip(family, holm([c["p"] for c in family]),
                                 holm([c["p_equiv"] for c in family]), strict=True):
            c["p_holm"], c["p_equiv_holm"] = p, p_equiv
            c["answer"] = ("in rounds ahead" if p < alpha and c["diff"] > 0 else
                           "one-shot ahead" if p < alpha and c["diff"] < 0 else
                           "equivalent" if p_equiv < alpha else "open")
    return out
