"""The comparison's statistics and the paper check, on rows worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import t

from prunelab.analysis.papers import SNIP_TABLE1, han_judgement, judgement
from prunelab.analysis.stats import crossed_se, headline, holm, summarize
from prunelab.analysis.verdicts import verdicts
from prunelab.ratios import ratio_sparsity
from prunelab.records import SearchChoice, pack_correct
from prunelab.report.markdown import han_section
from prunelab.report.markdown import report as markdown

N = 10_000  # test images
MARGIN, ALPHA, POWER = 0.005, 0.05, 0.8  # params.yaml's report section (0.5 pp)


def judge(points: list[dict], stage: str = "") -> list[dict]:
    return verdicts(points, MARGIN, ALPHA, POWER, stage=stage)


def point(method: str, ratio: float, seed: int, acc: float,
          correct: np.ndarray | None = None, val: float | None = None,
          before: np.ndarray | None = None) -> dict:
    if correct is None:  # `acc` of the images right, the errors first
        correct = np.arange(N) >= round((1 - acc) * N)
    before = correct if before is None else before
    return {"test_correct_before": pack_correct(before), "method": method,
            "granularity": "weight", "ratio": ratio, "seed": seed,
            "sparsity": ratio_sparsity(ratio), "compression_ratio": ratio * 0.9, "flops": 1,
            "effective_flops": 1, "val_accuracy_before": float(before.mean()),
            "test_accuracy_before": float(before.mean()),
            "val_accuracy": acc if val is None else val, "test_accuracy": float(correct.mean()),
            "baseline_test_accuracy": 0.98, "test_accuracy_drop": 0.98 - acc,
            "test_images": N, "test_correct": pack_correct(correct),
            # Validation: the same images for simplicity (what power is estimated from).
            "val_images": N, "val_correct": pack_correct(correct),
            "val_correct_before": pack_correct(before)}


def wrong_at(seed: int, accuracy: float) -> np.ndarray:
    """Correctness with (1 - accuracy)·N errors at seeded random places."""
    correct = np.ones(N, dtype=bool)
    errors = np.random.default_rng(seed).choice(N, round((1 - accuracy) * N), replace=False)
    correct[errors] = False
    return correct


def test_ratio_sparsity_is_one_minus_inverse_ratio() -> None:
    assert [ratio_sparsity(r) for r in (2, 4, 32)] == [0.5, 0.75, 0.96875]
    with pytest.raises(ValueError, match="exceed 1"):
        ratio_sparsity(1)


def test_summary_is_mean_and_sample_sd() -> None:
    points = [point("magnitude", 4, 0, 0.97), point("magnitude", 4, 1, 0.95),
              point("taylor", 4, 0, 0.955), point("taylor", 4, 1, 0.955)]
    mag = next(r for r in summarize(points) if r["method"] == "magnitude")
    assert mag["test_accuracy"] == pytest.approx(0.96)
    assert mag["test_accuracy_sd"] == pytest.approx(0.0141421356)  # sqrt(2e-4): n-1 = 1


def test_a_method_ahead_on_every_seed_is_decided_despite_the_baselines_spread() -> None:
    """Baselines 0.5 pp apart between seeds; "a" gets 10 more images right than "b" on
    every seed (0.1 pp). The old rule (gap > sd_a + sd_b ≈ 0.8 pp) called it within the
    spread; the paired test sees the same 0.1 pp on every seed."""
    bases = [0.975, 0.980, 0.970, 0.985, 0.9775]
    points = []
    for seed, acc in enumerate(bases):
        b = wrong_at(seed, acc)
        own = slice(10 * seed, 10 * seed + 10)  # 10 images per seed, no two seeds share one
        b[own] = False
        a = b.copy()
        a[own] = True  # b's errors there put right
        points += [point("a", 4, seed, acc, a), point("b", 4, seed, acc, b)]
    sd = summarize(points)[0]["test_accuracy_sd"]
    assert 0.001 < 2 * sd  # the old rule's "spread" swamps the 0.1 pp gap
    (v,) = judge(points)
    c = v["comparisons"]["b"]
    assert v["best"] == "a" and c["diff"] == pytest.approx(0.001)
    # By hand, the 5 × N table of differences: 1 on each seed's own 10 images, else 0; grand
    # mean 0.001. Seeds: every row mean is 0.001, SS_seed = 0. Images: 0.2 on 50, 0 on the
    # rest, SS_image = 5·(50·0.199² + 9950·0.001²) = 9.95. Total: 50·0.999² + 49950·0.001²
    # = 49.95, so SS_resid = 40 on 4·9999 = 39996 df. MS_seed + MS_image − MS_resid =
    # 9.95/9999 − 40/39996 < 0: no seed or image effect, all interaction, so the SE is
    # the interaction's own, sqrt(MS_resid / (5N)), on 39996 df.
    se = (40 / 39996 / (5 * N)) ** 0.5
    assert c["se"] == pytest.approx(se) and c["df"] == 39996
    # t quantile 0.975 at 39996 degrees of freedom, from the table: 1.9600.
    assert c["lo"] == pytest.approx(0.001 - 1.9600 * se, abs=1e-7)
    assert c["p_ahead_holm"] < 0.01 and v["decided"] and v["ahead"] == ["b"]


def test_crossed_standard_error_and_satterthwaite_df_by_hand() -> None:
    """D = [[1, 0, 0, −1], [1, 1, 0, 0]] (2 seeds × 4 images). Grand mean 1/4; seed means
    0, 1/2; image means 1, 1/2, 0, −1/2. SS_seed = 4·(1/16 + 1/16) = 1/2 on 1 df; SS_image
    = 2·(9/16 + 1/16 + 1/16 + 9/16) = 5/2 on 3 df (MS 5/6); residuals all ±1/4, SS_resid
    = 8/16 = 1/2 on 3 df (MS 1/6). SE² = (1/2 + 5/6 − 1/6) / 8 = 7/48. Satterthwaite:
    df = (7/6)² / ((1/2)²/1 + (5/6)²/3 + (1/6)²/3) = (49/36) / (53/108) = 147/53. The
    per-seed and per-image variances added (the old SE) give (1/2 + 5/6)/8 = 1/6: the
    interaction counted twice."""
    se, df = crossed_se(np.array([[1, 0, 0, -1], [1, 1, 0, 0]], dtype=float))
    assert se == pytest.approx((7 / 48) ** 0.5) and df == pytest.approx(147 / 53)
    # All interaction: seed and image shares estimate below zero, the SE is the
    # interaction's own: MS_resid = 4 on 1 df, SE² = 4 / 4.
    assert crossed_se(np.array([[1, -1], [-1, 1]], dtype=float)) == (1.0, 1.0)
    # One seed: the image term alone, var([1, 0, 0, 1]) / 4 = (1/3) / 4, on 3 df.
    se1, df1 = crossed_se(np.array([[1, 0, 0, 1]], dtype=float))
    assert se1 == pytest.approx((1 / 12) ** 0.5) and df1 == 3


def test_the_best_is_chosen_on_validation_and_tied_unless_ahead_on_test() -> None:
    """"v" leads on validation, "t" on test by 0.2 pp on every seed: the best is "v" (not
    the test winner), the comparison with "t" is negative, and "v" is not ahead of it —
    but within the 0.5 pp margin on every seed, so the two are equivalent."""
    points = []
    for seed in range(3):
        t = wrong_at(seed, 0.97)
        v = t.copy()
        v[np.flatnonzero(t)[:20]] = False  # 20 images fewer right on test
        points += [point("v", 4, seed, 0.97, v, val=0.975),
                   point("t", 4, seed, 0.97, t, val=0.972)]
    (cell,) = judge(points)
    c = cell["comparisons"]["t"]
    assert cell["best"] == "v" and c["diff"] == pytest.approx(-0.002)
    assert c["p_behind"] < 0.05 and c["p_ahead_holm"] > 0.5  # the wrong way: not a lead
    assert cell["label"] == "equivalent" and cell["ahead"] == [] and not cell["decided"]


def test_identical_methods_are_equivalent_not_decided() -> None:
    points = [point(m, 8, seed, 0.97, wrong_at(seed, 0.97)) for m in ("x", "y")
              for seed in range(3)]
    (v,) = judge(points)
    c = next(iter(v["comparisons"].values()))
    assert c["diff"] == 0 and c["p"] == 1.0 and c["p_equiv"] == 0.0
    assert v["label"] == "equivalent" and not v["decided"]


def test_holm_by_hand() -> None:
    # Sorted 0.01, 0.03, 0.04: × 3, × 2, × 1 = 0.03, 0.06, 0.04 -> monotone 0.03, 0.06, 0.06.
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_paper_check_judges_absolute_error_and_the_per_seed_change() -> None:
    def row(seed: int, base: float, at12: float) -> dict:
        return {"seed": seed, "base_test_error": base / 100,
                "ratios": {"12.5": {"compression_ratio": 12.3, "test_error": at12 / 100}}}

    rows = [row(0, 1.50, 1.60), row(1, 1.40, 1.55), row(2, 1.60, 1.65)]
    han, snip = han_judgement("lenet300", rows)
    # Absolute: mean 1.60 % <= 1.59 + 0.15: within the tolerance.
    assert han["our_error"][0] == pytest.approx(1.60) and han["within_tolerance"] is True
    # Change: [+0.10, +0.15, +0.05] pp, mean 0.10, sd 0.05; t(0.975, 2) = 4.3027 by the
    # table, half-width 4.3027·0.05/√3 = 0.1242. Without each image's outcome the test
    # set's noise is not counted: no verdict against Han's −0.05.
    mean, lo, hi = han["our_change"]
    assert mean == pytest.approx(0.10) and lo == pytest.approx(0.10 - 0.1242, abs=1e-4)
    assert han["their_change"] == pytest.approx(-0.05)
    assert "change_verdict" not in han
    # SNIP's 20x: no run of ours at that compression, so no fallback to another ratio.
    assert snip["match"] is None
    text = han_section("intro.", [han, snip])
    assert "no matching point" in text and "prunes at initialisation" in text
    assert han_judgement("mlp", rows) == []
    # A run with no magnitude-weight points (neuron granularity only): no matching point.
    assert [c["match"] for c in han_judgement("lenet300", [])] == [None, None]


def test_snip_s_table_is_matched_by_the_sparsity_asked_not_the_compression_realised() -> None:
    """SNIP's Table 1 gives sparsity of the weights: a run keyed "20" (95 %) is its row
    even though biases kept make its realised compression of all parameters 19.4×; a run
    without the 50× key has no matching point (no fallback to another ratio)."""
    rows = [{"seed": s, "base_test_error": b / 100,
             "ratios": {"20": {"compression_ratio": 19.4, "test_error": e / 100}}}
            for s, b, e in ((40, 1.50, 1.70), (41, 1.60, 1.90))]
    at95, at98 = judgement(SNIP_TABLE1, rows)
    assert (at95["match"], at98["match"]) == ("20", None)
    # Theirs: 1.7 -> 1.6, a change of -0.1 pp; ours [+0.20, +0.30]: mean 1.80 % error is
    # not within 1.6 + 0.15.
    assert at95["their_change"] == pytest.approx(-0.1)
    assert at95["our_change"][0] == pytest.approx(0.25)
    assert at95["our_error"][0] == pytest.approx(1.80) and at95["within_tolerance"] is False
    assert "| Lee et al. 2019 (SNIP), Table 1 (the same procedure) | 1.70 → 2.40 at 50× | " \
        "— | no matching point |" in han_section("intro.", [at95, at98])


def test_paper_check_counts_the_test_set_and_their_run_s_noise() -> None:
    """Pruned wrong − baseline wrong per image: D = [[1, 0, 0, −1], [1, 1, 0, 0]], the
    table of `test_crossed_standard_error_and_satterthwaite_df_by_hand` (SE² 7/48 on
    147/53 df). Han's one run: σa² = (MS_seed − MS_resid)/N = (1/2 − 1/6)/4 = 1/12, the
    within-seed variances over images 2/3 and 1/3, mean 1/2, over N = 4: 1/8; 5/24 = 10/48
    in all. Ours − theirs: SE² = 17/48, Welch df (17/48)² / ((7/48)²/(147/53) + (10/48)²/1)."""
    base = [[1, 1, 1, 0], [1, 1, 1, 1]]
    pruned = [[0, 1, 1, 1], [0, 0, 1, 1]]
    rows = [{"seed": s, "base_test_error": 1 - np.mean(b), "test_images": 4,
             "base_test_correct": pack_correct(np.array(b)),
             "ratios": {"12.5": {"compression_ratio": 12.3, "test_error": 1 - np.mean(p),
                                 "test_correct": pack_correct(np.array(p))}}}
            for s, (b, p) in enumerate(zip(base, pruned, strict=True))]
    han = han_judgement("lenet300", rows)[0]
    mean, lo, hi = han["our_change"]
    assert mean == pytest.approx(25.0)
    assert hi - mean == pytest.approx(float(t.ppf(0.975, 147 / 53)) * 100 * (7 / 48) ** 0.5)
    diff, lo2, hi2 = han["vs_theirs"]
    df = (17 / 48) ** 2 / ((7 / 48) ** 2 / (147 / 53) + (10 / 48) ** 2)
    assert diff == pytest.approx(25.05) and han["vs_theirs_df"] == pytest.approx(df)
    assert han["vs_theirs_se"] == pytest.approx(100 * (17 / 48) ** 0.5)
    assert hi2 - diff == pytest.approx(float(t.ppf(0.975, df)) * 100 * (17 / 48) ** 0.5)
    # +25 pp on 4 images and 2 seeds: an interval far wider than the change.
    assert han["change_verdict"] == "consistent with theirs"
    assert f"| {diff:+.2f} [{lo2:+.2f}, {hi2:+.2f}] |" in han_section("intro.", [han])


def test_one_seed_shows_no_sd_and_tests_on_the_test_images_alone() -> None:
    points = [point("magnitude", 16, 0, 0.9926, wrong_at(0, 0.9926)),
              point("random", 16, 0, 0.9800, wrong_at(1, 0.98))]
    rows = summarize(points)
    (v,) = judge(points)
    # One seed: no spread over seeds, so the interval is the test set's noise alone, on
    # the N − 1 degrees of freedom of the images' variance.
    assert v["best"] == "magnitude" and v["comparisons"]["random"]["df"] == N - 1
    text = markdown("lenet5", rows, [], [v], [v], "", (0.9929, 0.0), [0], {}, "", 0.5, ALPHA,
                    ablations=[])
    data_lines = [ln for ln in text.splitlines() if ln.startswith(("| magnitude", "| random"))]
    assert len(data_lines) == 2 and not any("±" in ln for ln in data_lines)


def test_headline_takes_the_highest_ratio_within_the_drop_and_the_set_gap() -> None:
    """(A method's name may hold a hyphen: obs-noupdate-weight is obs-noupdate, weight.)
    The set-level gap is the mean over ratios of the granularity's own oracle; no
    single-removal ρ."""
    rows = [{"method": "obs-noupdate", "granularity": "weight", "ratio": r, "test_accuracy_drop": d}
            for r, d in ((2, 0.001), (4, 0.004), (8, 0.006), (16, 0.003))]
    sets = {"weight_sets": {"obs-noupdate": {"r2": {"accuracy_gap_pp": {"mean": 1.0}},
                                             "r4": {"accuracy_gap_pp": {"mean": 2.0}}}},
            "sets": {"obs-noupdate": {"r2": {"accuracy_gap_pp": {"mean": 9.0}}}}}
    choice = SearchChoice(study="s", trial=3, trial_key="grid-3", sparsity=0.9, lr=None,
                          finetune_seed=3, val_accuracy=0.97, realised_sparsity=0.9,
                          baseline_val_accuracy=0.98, within_allowed_drop=True,
                          trials_complete=8, trials_pruned=0, trials_failed=0, storage="j")
    (line,) = headline(rows, {"obs-noupdate-weight": choice},
                       {"obs-noupdate-weight": {"test_accuracy": 0.97}}, 0.005, sets).values()
    # 16x is within 0.5 pp although 8x is not: the highest ratio within it is 16.
    assert line == {"searched_sparsity": 0.9, "searched_test_accuracy": 0.97,
                    "max_ratio_within_drop": 16, "set_gap_pp": 1.5}


def test_before_fine_tuning_is_judged_on_the_cut_models_own_predictions() -> None:
    """"a" is far ahead right after the cut (95 % vs 80 %) and tied after fine-tuning:
    the before-fine-tuning verdict is decided for "a", the after one is not."""
    points = []
    for seed in range(5):
        after = wrong_at(seed, 0.97)
        points += [point("a", 8, seed, 0.97, after, before=wrong_at(10 + seed, 0.95)),
                   point("b", 8, seed, 0.97, after, before=wrong_at(20 + seed, 0.80))]
    (after_v,) = judge(points)
    (before_v,) = judge(points, stage="_before")
    assert not after_v["decided"]
    assert before_v["best"] == "a" and before_v["decided"]
    assert before_v["comparisons"]["b"]["diff"] == pytest.approx(0.15, abs=1e-3)
    assert before_v["best_mean"] == pytest.approx(0.95, abs=1e-3)


def test_the_ablation_contrasts_the_same_cut_with_and_without_the_update() -> None:
    """obs gets 30 more images right than obs-noupdate right after the cut on every seed
    (their own 30, 0.3 pp), and the same images after fine-tuning: the contrast is
    +0.3 pp before (significant after Holm over the 2 cells) and exactly 0 after."""
    from prunelab.analysis.contrasts import contrast
    from prunelab.report.answer import ablation_lines

    points = []
    for ratio in (4, 8):
        for seed in range(3):
            after = wrong_at(seed, 0.97)
            plain = wrong_at(50 + seed, 0.90)
            plain[30 * seed: 30 * seed + 30] = False
            surgeon = plain.copy()
            surgeon[30 * seed: 30 * seed + 30] = True
            points += [point("obs", ratio, seed, 0.97, after, before=surgeon),
                       point("obs-noupdate", ratio, seed, 0.97, after, before=plain),
                       point("magnitude", ratio, seed, 0.96)]
    before = contrast(points, "obs", "obs-noupdate", MARGIN, stage="_before")
    after = contrast(points, "obs", "obs-noupdate", MARGIN)
    assert [c["ratio"] for c in before] == [4, 8]
    assert all(c["diff"] == pytest.approx(0.003) and c["p_holm"] < 0.05 for c in before)
    assert all(c["diff"] == 0 and c["p_holm"] == 1 for c in after)
    lines = ablation_lines([(before, after)])
    assert "## Ablation: `obs` against `obs-noupdate`" in lines
    assert any(ln.startswith("| weight 4× | +0.30 [") for ln in lines)


def test_a_cell_is_its_own_holm_family_so_other_cells_leave_its_verdict_as_it_is() -> None:
    """"a" leads "b" by 10 images on every seed at 4×. Judged alone, or beside 20 other
    cells where the methods are level: the same Holm p-values, interval and label (one
    family per cell: the best against k − 1 others, 2 tests each, here 2)."""
    def cell(ratio: float, lead: int) -> list[dict]:
        out = []
        for seed in range(5):
            b = wrong_at(seed, 0.975)
            own = slice(10 * seed, 10 * seed + lead)
            b[own] = False
            a = b.copy()
            a[own] = True
            out += [point("a", ratio, seed, 0.975, a), point("b", ratio, seed, 0.975, b)]
        return out

    alone = judge(cell(4, 10))
    crowded = judge(cell(4, 10) + [p for r in range(5, 25) for p in cell(r, 0)])
    (v_alone,) = alone
    (v_crowded,) = [v for v in crowded if v["ratio"] == 4]
    assert len(crowded) == 21 and v_crowded["family"] == v_alone["family"] == 2
    for key in ("p_ahead_holm", "p_equiv_holm", "lo_adj", "hi_adj"):
        assert v_crowded["comparisons"]["b"][key] == v_alone["comparisons"]["b"][key]
    assert v_crowded["label"] == v_alone["label"] == "decided"


def test_the_accuracy_panels_zoom_to_where_the_methods_differ() -> None:
    """Four curves whose lowest points are 97, 96.5, 96 and 80 %: the axis runs from the
    best three quarters' lowest (96 %) to the highest point (98 %), 8 % of that 2-pp span
    beyond each end; the fourth (80 %) falls below it, and one flat curve still gets a
    span of its own (0.5 pp)."""
    from prunelab.report.figures import where_they_differ

    lows = {"a": 97.0, "b": 96.5, "c": 96.0, "d": 80.0}
    highs = {"a": 98.0, "b": 98.0, "c": 97.9, "d": 97.0}
    bottom, top = where_they_differ(lows, highs)
    assert (bottom, top) == pytest.approx((96.0 - 0.16, 98.0 + 0.16))
    assert [m for m, low in lows.items() if low < bottom] == ["d"]
    assert where_they_differ({"a": 97.0}, {"a": 97.0}) == pytest.approx((96.96, 97.04))
