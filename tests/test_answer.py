"""The answer's statistics, worked by hand: TOST with Holm and the four labels, the seeds a
power needs (from validation), and the primary contrasts on the area under the curve."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as st
from test_report import ALPHA, MARGIN, POWER, N, point, wrong_at

from prunelab.analysis.contrasts import auc_weights, in_rounds, primary
from prunelab.analysis.stats import holm, paired_difference, seeds_needed
from prunelab.analysis.verdicts import verdicts
from prunelab.report.answer import answer_lines, in_rounds_lines

D = np.array([[1, 0, 0, -1], [1, 1, 0, 0]], dtype=float)  # test_report's crossed-SE table


def test_tost_p_value_by_hand() -> None:
    """D (2 seeds × 4 images): mean 1/4, SE² = 7/48, df = 147/53 (test_report). Margin 1:
    "below −1" is rejected at t = (1/4 + 1)/SE = 3.27, "above +1" at t = (1 − 1/4)/SE =
    1.96; TOST's p is the larger one-sided p, the second's. Margin 1/4: the mean sits on
    it, p = 1/2."""
    se, df = (7 / 48) ** 0.5, 147 / 53
    c = paired_difference(list(D), [np.zeros(4)] * 2, margin=1.0)
    assert c["p_equiv"] == pytest.approx(st.t.sf(0.75 / se, df))
    assert c["p_ahead"] == pytest.approx(st.t.sf(0.25 / se, df))
    assert c["p_ahead"] + c["p_behind"] == pytest.approx(1.0)
    assert paired_difference(list(D), [np.zeros(4)] * 2, margin=0.25)["p_equiv"] == \
        pytest.approx(0.5)


def test_one_pair_ahead_one_equivalent_one_open_under_holm() -> None:
    """Best "a" (top on validation) against three methods, 5 seeds:
    "b": 100 images fewer right on every seed (a ahead by 1 pp, every seed alike);
    "e": 5 images fewer right on every seed (0.05 pp: far inside ±0.5 pp);
    "w": +100 images on seeds 0, 2, 4 and −100 on seeds 1, 3 (mean +0.2 pp, seed sd ~1.1
    pp): neither ahead nor equivalent. The family is 3 pairs × 2 tests = 6 hypotheses:
    each adjusted p is the Holm adjustment of the 6 raw one-sided p-values."""
    points = []
    for seed in range(5):
        a = wrong_at(seed, 0.97)
        right = np.flatnonzero(a)
        b, e, w = a.copy(), a.copy(), a.copy()
        b[right[:100]] = False
        e[right[:5]] = False
        if seed % 2:
            w[np.flatnonzero(~a)[:100]] = True  # w gets 100 of a's errors right
        else:
            w[right[:100]] = False
        points += [point("a", 8, seed, 0.97, a, val=0.99), point("b", 8, seed, 0.96, b),
                   point("e", 8, seed, 0.97, e), point("w", 8, seed, 0.97, w)]
    (v,) = verdicts(points, MARGIN, ALPHA, POWER)
    cs = v["comparisons"]
    assert v["best"] == "a" and cs["b"]["diff"] == pytest.approx(0.01)
    assert cs["w"]["diff"] == pytest.approx(0.002)
    raw = [cs[m]["p_ahead"] for m in "bew"] + [cs[m]["p_equiv"] for m in "bew"]
    adjusted = holm(raw)
    assert [cs[m]["p_ahead_holm"] for m in "bew"] == pytest.approx(adjusted[:3])
    assert [cs[m]["p_equiv_holm"] for m in "bew"] == pytest.approx(adjusted[3:])
    assert v["ahead"] == ["b"] and v["equivalent"] == ["e"] and v["open"] == ["w"]
    assert v["label"] == "partly" and not v["decided"]
    # Only the open one carries the seeds it would need (from validation): more than 5.
    assert cs["w"]["seeds_needed"] > 5 and "seeds_needed" not in cs["b"]
    # The simultaneous interval is wider than the plain 95 % one (6 tests in the family).
    assert cs["w"]["lo_adj"] < cs["w"]["lo"] and cs["w"]["hi_adj"] > cs["w"]["hi"]


def test_seeds_needed_by_hand() -> None:
    """D's mean squares: seed 1/2, image 5/6, residual 1/6 (test_report), so σa² = (1/2 −
    1/6)/4 = 1/12, σb² = (5/6 − 1/6)/2 = 1/3, σc² = 1/6. On N = 40 test images, n seeds
    would give MS_seed = 40σa² + σc² = 7/2, MS_image = n/3 + 1/6, MS_resid = 1/6, so
    SE(n)² = (MS_seed + MS_image − MS_resid)/(40n) = 7/(80n) + 1/120, with Satterthwaite's
    df = (7/2 + n/3)² / ((7/2)²/(n − 1) + (n/3 + 1/6)²/39 + (1/6)²/(39(n − 1))). Margin
    0.5, α 0.05, power 0.8: the one-sided test's (t₀.₉₅ + t₀.₈)·SE is reached at n = 4, but
    TOST at δ = 0 needs (t₀.₉₅ + t₀.₉)·SE (both its tests must reject), first met at n = 6:
    6 is the answer. Margin 0.2: SE never drops below √(1/120) = 0.091 > 0.2/2.49, so no
    count does. With assurance 0.8, MS_seed is planned at its χ² limit on 1 df, 1/2 ×
    1/χ²₀.₂(1) = 1/2 × 15.58: σa² = (7.79 − 1/6)/4, and margin 1 is first met at n = 20."""
    def reaches(n: int, margin: float, q: float, ms_seed: float = 0.5) -> bool:
        m_seed = 40 * (ms_seed - 1 / 6) / 4 + 1 / 6
        total = m_seed + n / 3 + 1 / 6 - 1 / 6
        se = (total / (40 * n)) ** 0.5
        df = total ** 2 / (m_seed ** 2 / (n - 1) + (n / 3 + 1 / 6) ** 2 / 39
                           + (1 / 6) ** 2 / (39 * (n - 1)))
        return margin >= (st.t.ppf(0.95, df) + st.t.ppf(q, df)) * se

    assert not reaches(3, 0.5, 0.8) and reaches(4, 0.5, 0.8)  # the one-sided test's need
    assert not reaches(5, 0.5, 0.9) and reaches(6, 0.5, 0.9)  # TOST's, the larger
    assert seeds_needed(D, 40, 0.5, 0.05, 0.8) == 6
    assert seeds_needed(D, 40, 0.2, 0.05, 0.8) is None
    assert seeds_needed(D, 40, 5.0, 0.05, 0.8) == 2  # at least 2: a variance needs them
    limit = 0.5 / st.chi2.ppf(0.2, 1)
    assert not reaches(19, 1.0, 0.9, limit) and reaches(20, 1.0, 0.9, limit)
    assert seeds_needed(D, 40, 1.0, 0.05, 0.8, assurance=0.8) == 20
    with pytest.raises(ValueError, match="2 seeds"):
        seeds_needed(D[:1], 40, 0.8, 0.05, 0.8)


def test_area_weights_are_trapezoids_over_log2_compression() -> None:
    assert auc_weights([2, 4, 8, 16, 32]) == pytest.approx(
        {2: 1 / 8, 4: 1 / 4, 8: 1 / 4, 16: 1 / 4, 32: 1 / 8})
    assert auc_weights([2, 8]) == pytest.approx({2: 0.5, 8: 0.5})
    assert auc_weights([4]) == {4: 1.0}


def test_primary_contrast_is_the_paired_area_difference() -> None:
    """Ratios 2, 4, 8 (weights 1/4, 1/2, 1/4). On every seed, taylor gets 0, 10 and 40
    images fewer right than magnitude at 2×, 4×, 8×: its area is (0·1/4 + 10·1/2 + 40·1/4)
    = 15 images lower, −0.15 pp, the same on every seed: behind, not ahead. activation is
    taylor's exact copy: taylor against it is 0, equivalent."""
    points = []
    for seed in range(4):
        for ratio, fewer in ((2, 0), (4, 10), (8, 40)):
            mag = wrong_at(seed, 0.97)
            tay = mag.copy()
            tay[np.flatnonzero(mag)[100 * seed: 100 * seed + fewer]] = False
            points += [point("magnitude", ratio, seed, 0.97, mag),
                       point("taylor", ratio, seed, 0.97, tay),
                       point("activation", ratio, seed, 0.97, tay)]
    contrasts = primary(points, ["taylor"], ["magnitude", "activation"],
                        {"weight": [2, 4, 8]}, MARGIN, ALPHA, POWER)
    vs_mag, vs_act = contrasts
    assert (vs_mag["method"], vs_mag["other"]) == ("taylor", "magnitude")
    assert vs_mag["diff"] == pytest.approx(-15 / N) and vs_mag["seeds"] == 4
    # Behind on every seed by the same 0.15 pp: significantly, and inside the margin.
    assert vs_mag["answer"] == "behind, within the margin" and vs_mag["p_ahead_holm"] > 0.5
    assert vs_act["diff"] == 0 and vs_act["answer"] == "equivalent"
    text = "\n".join(answer_lines(contrasts, "Does it?", "q", True, 0.5, ALPHA, POWER))
    assert "**weight granularity** — equivalent: taylor vs activation; behind, within the " \
        "margin: taylor vs magnitude." in text
    assert "`taylor` vs `magnitude`: -0.15 pp" in text
    assert "(exploratory: named in params.yaml, not fixed by a plan" in text
    assert "pre-registered" not in text
    # Over 2-4x alone (weights 1/2, 1/2): 0·1/2 + 10·1/2 = 5 images, −0.05 pp.
    (short, _) = primary(points, ["taylor"], ["magnitude", "activation"],
                         {"weight": [2, 4]}, MARGIN, ALPHA, POWER)
    assert short["diff"] == pytest.approx(-5 / N) and short["ratios"] == [2, 4]


def test_the_one_sentence_answer_groups_the_criteria_by_what_their_answers_say() -> None:
    """Hand-made labels: the sentence names each granularity with its range, and under each
    reference the criteria sharing a label, in ANSWERS' order."""
    from prunelab.report.answer import answer_sentence

    def c(g: str, m: str, o: str, a: str) -> dict[str, object]:
        return {"granularity": g, "method": m, "other": o, "answer": a,
                "ratios": [2, 128] if g == "weight" else [2, 32]}

    found = [c("weight", "taylor", "magnitude", "behind"),
             c("weight", "fisher", "magnitude", "behind"),
             c("weight", "woodfisher", "magnitude", "equivalent"),
             c("weight", "taylor", "activation", "ahead, within the margin"),
             c("neuron", "taylor", "magnitude", "open")]
    assert answer_sentence(found, "On `mlp`") == (
        "On `mlp`: as sparse weights from 2× to 128×, `woodfisher` is equivalent to "
        "`magnitude`; `taylor` and `fisher` are behind `magnitude`; `taylor` is ahead of "
        "`activation`, within the margin; and as smaller dense models (neurons) from 2× to "
        "32×, `taylor` is not told apart from `magnitude`.")
    text = "\n".join(answer_lines([{**x, "diff": 0.0, "lo_adj": 0.0, "hi_adj": 0.0,
                                     "seeds": 10, "p_ahead_holm": 1.0, "p_behind_holm": 1.0,
                                     "p_equiv_holm": 1.0, "seeds_needed": 3} for x in found],
                                   "Does it?", "q", True, 0.5, ALPHA, POWER,
                                   "`plan.md` (commit abc of 2026-12-02)", "On `mlp`"))
    assert text.startswith("## The answer\n\n**In one sentence**: On `mlp`: as sparse")
    assert "(pre-registered in `plan.md` (commit abc of 2026-12-02))" in text


def test_in_rounds_against_one_shot_is_the_paired_area_difference() -> None:
    """Ratios 2, 4, 8 (weights 1/4, 1/2, 1/4), 4 seeds. taylor in 3 rounds gets 0, 20 and
    40 images more right than taylor one-shot at 2×, 4×, 8×: its area is 0·1/4 + 20·1/2 +
    40·1/4 = 20 images higher, +0.2 pp on every seed: rounds ahead, two-sided. magnitude
    in 3 rounds is its one-shot's exact copy: 0, equivalent. wanda has no one-shot series:
    no comparison. Holm over the two p-values of the granularity."""
    once, rounds = [], []
    for seed in range(4):
        for ratio, more in ((2, 0), (4, 20), (8, 40)):
            tay = wrong_at(seed, 0.97)
            better = tay.copy()
            better[np.flatnonzero(~tay)[10 * seed: 10 * seed + more]] = True
            mag = wrong_at(10 + seed, 0.97)
            once += [{**point("taylor", ratio, seed, 0.97, tay), "rounds": 1},
                     {**point("magnitude", ratio, seed, 0.97, mag), "rounds": 1}]
            rounds += [{**point(m, ratio, seed, 0.97, c), "rounds": 3}
                       for m, c in (("taylor", better), ("magnitude", mag), ("wanda", mag))]
    contrasts = in_rounds(once, rounds, [2, 4, 8], MARGIN, ALPHA)
    by = {c["method"]: c for c in contrasts}
    assert set(by) == {"taylor", "magnitude"}
    tay_c, mag_c = by["taylor"], by["magnitude"]
    assert tay_c["diff"] == pytest.approx(20 / N) and tay_c["seeds"] == 4
    assert tay_c["rounds"] == 3 and tay_c["area"] - tay_c["area_one_shot"] == \
        pytest.approx(20 / N)
    assert [tay_c["p_holm"], mag_c["p_holm"]] == pytest.approx(holm([tay_c["p"], mag_c["p"]]))
    assert tay_c["answer"] == "in rounds ahead" and tay_c["p_holm"] < ALPHA
    assert mag_c["diff"] == 0 and mag_c["answer"] == "equivalent"
    text = "\n".join(in_rounds_lines(contrasts, 3, 0.5, ALPHA))
    assert "| weight | `taylor` | 3 | 97.00 | 97.20 | +0.20 [" in text
    assert in_rounds_lines([], 3, 0.5, ALPHA) == []


def test_controls_are_compared_with_the_best_but_never_the_best_nor_labelled() -> None:
    """dense+ft (ratio 1, top on validation) beside "a" and "b" at 4×: the best is still a
    method, dense+ft is one of its comparisons, and the label speaks of "b" alone.
    Each row's drop against dense+ft is the same seed's difference: dense+ft gets 98 %,
    "a" 97 % on every seed, so 1 pp."""
    from prunelab.analysis.stats import summarize

    points = []
    for seed in range(3):
        a = wrong_at(seed, 0.97)
        points += [point("a", 4, seed, 0.97, a, val=0.975), point("b", 4, seed, 0.97, a),
                   {**point("dense+ft", 2, seed, 0.98, wrong_at(10 + seed, 0.98), val=0.999),
                    "ratio": 1.0, "sparsity": 0.0}]
    (v,) = verdicts(points, MARGIN, ALPHA, POWER)
    assert v["best"] == "a" and v["ratio"] == 4
    assert set(v["comparisons"]) == {"b", "dense+ft"}
    assert v["comparisons"]["dense+ft"]["diff"] == pytest.approx(-0.01)
    assert v["label"] == "equivalent" and v["equivalent"] == ["b"]
    row = next(r for r in summarize(points) if r["method"] == "a")
    assert row["drop_vs_dense_ft"] == pytest.approx(0.01)


@pytest.mark.parametrize(("diff", "lo", "hi", "p_ahead", "p_behind", "p_equiv", "said"), [
    (0.8, 0.6, 1.0, 0.001, 1, 1, "ahead beyond the margin"),  # the whole interval past +m
    (0.3, 0.1, 0.45, 0.001, 1, 0.01, "ahead, within the margin"),  # both findings
    (0.5, 0.1, 0.9, 0.001, 1, 0.6, "ahead"),  # ahead, but how far is not settled
    (0.05, -0.2, 0.3, 0.4, 0.9, 0.01, "equivalent"),
    (-0.3, -0.45, -0.1, 1, 0.001, 0.01, "behind, within the margin"),
    (-0.9, -1.2, -0.6, 1, 0.001, 1, "behind beyond the margin"),
    (-0.5, -0.9, -0.1, 1, 0.001, 0.6, "behind"),
    (0.2, -0.6, 1.0, 0.2, 1, 0.3, "open"),
])
def test_a_contrast_s_answer_keeps_its_significance_and_its_place_against_the_margin(
    diff: float, lo: float, hi: float, p_ahead: float, p_behind: float, p_equiv: float,
    said: str
) -> None:
    """At margin 0.5 and alpha 0.05, by hand: significance from the one-sided Holm p-values,
    "within" from TOST's, "beyond" from the simultaneous interval."""
    from prunelab.analysis.contrasts import ANSWERS, answer

    c = {"diff": diff, "lo_adj": lo, "hi_adj": hi, "p_ahead_holm": p_ahead,
         "p_behind_holm": p_behind, "p_equiv_holm": p_equiv}
    assert answer(c, 0.5, 0.05) == said and said in ANSWERS


def test_an_exploratory_report_quotes_the_confirmatory_sentences_first() -> None:
    """`sentences` reads each question's one-sentence answer out of a report's Markdown, and
    `answer_lines` puts the confirmatory one first, linked, before this run's own."""
    from prunelab.report.answer import sentences

    confirmatory = "\n".join([
        "# Pruning criteria compared on `mlp`", "", "## The answer", "",
        "**In one sentence**: On `mlp` (pre-registered): weights, A.", "", "text", "",
        "## Question `scratch`", "", "**In one sentence**: On `mlp` (pre-registered): B.",
        "", "## Verdicts after fine-tuning", "", "**In one sentence**: not an answer"])
    found = sentences(confirmatory)
    assert found == {"": "On `mlp` (pre-registered): weights, A.",
                     "scratch": "On `mlp` (pre-registered): B."}
    own = [{"granularity": "weight", "method": "taylor", "other": "magnitude",
            "answer": "behind", "ratios": [2, 32], "diff": -0.004, "lo_adj": -0.006,
            "hi_adj": -0.002, "seeds": 5, "p_ahead_holm": 1.0, "p_behind_holm": 0.001,
            "p_equiv_holm": 0.2, "seeds_needed": 3}]
    lines = answer_lines(own, "Does it?", "gradient", True, 0.5, ALPHA, POWER, None,
                         "On `mlp` (exploratory)", ("confirmatory/report.md", found[""]))
    assert lines[2] == ("**Confirmed** (the pre-registered run, [confirmatory/report.md]"
                        "(confirmatory/report.md)): On `mlp` (pre-registered): weights, A.")
    assert lines[6].startswith("**In one sentence**: On `mlp` (exploratory): as sparse "
                               "weights from 2× to 32×, `taylor` is behind `magnitude`.")


def test_the_report_finds_the_confirmatory_report_beside_itself(tmp_path) -> None:
    """`report.confirmation` is read relative to the report's own folder; nothing is
    quoted before that file exists, nor by the confirmatory run itself."""
    from pathlib import Path

    from prunelab.config import load_config
    from prunelab.stages.report import confirmation

    cfg = load_config(Path(__file__).resolve().parents[1] / "params.yaml")
    assert confirmation(cfg, None, tmp_path) == ("", {})
    (tmp_path / "confirmatory").mkdir()
    (tmp_path / "confirmatory" / "report.md").write_text(
        "## The answer\n\n**In one sentence**: On `mlp` (pre-registered): A.\n")
    assert confirmation(cfg, None, tmp_path) == (
        "confirmatory/report.md", {"": "On `mlp` (pre-registered): A."})
    assert confirmation(cfg, "`plan.md` (commit abc)", tmp_path) == ("", {})
