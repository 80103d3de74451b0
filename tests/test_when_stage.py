"""`prunelab when` on a slice of real MNIST: off by default (an empty points file, no
section), on it computes every method × variant × ratio × seed once, a rerun computes
nothing, a new ratio computes only its points, and the report's section answers the
question at initialisation and the sanity checks from those points."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from prunelab.analysis.when import at_init, named
from prunelab.config import parse_config
from prunelab.report.when import section

from helpers import copy_project, run, small_params

WHEN = ["prunelab", "when", "--baselines", "models/seeds", "--out-dir", "when",
        "--workers", "2"]
QUESTION = {"name": "at-init", "ask": "Does SNIP beat magnitude at θ₀?", "criteria": ["snip"],
            "references": ["magnitude"], "alpha": None, "equivalence_margin_pp": None}


def _when(**changes: object) -> dict[str, object]:
    return {"enabled": True, "methods": ["snip", "magnitude", "random"], "ratios": [8],
            "sanity": True, "synflow_rounds": 100, "epochs": 1, "question": QUESTION, **changes}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, mirror: Path) -> Path:
    params = small_params(mirror, **{"prune.methods": ["magnitude", "random"],
                                     "sweep.seeds": [0, 1], "prune.calibration_batches": 2})
    proj = copy_project(tmp_path_factory.mktemp("when"), params)
    run(["dvc", "repro", "train"], proj)
    return proj


def _set_when(proj: Path, when: dict[str, object]) -> None:
    params = yaml.safe_load((proj / "params.yaml").read_text())
    params["when"] = when
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def _points(proj: Path) -> list[dict[str, object]]:
    return json.loads((proj / "when" / "points.json").read_text())["points"]


def test_off_by_default_it_computes_nothing_and_the_report_says_nothing(project: Path) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    assert params["when"]["enabled"] is False  # the shipped default
    out = run(WHEN, project).stdout
    assert "nothing computed" in out and _points(project) == []
    assert "when: off (when.enabled is false" in run(["prunelab", "plan"], project).stdout


def test_each_point_is_computed_once_and_a_new_ratio_computes_only_its_own(
        project: Path) -> None:
    _set_when(project, _when())
    assert "when: 14 points, 14 to compute, 0 kept" in run(["prunelab", "plan"], project).stdout
    first = run(WHEN, project).stdout
    # snip and magnitude with their two sanity variants, random alone; 1 ratio, 2 seeds.
    assert "14 points, 14 to compute" in first, first
    points = _points(project)
    assert sorted({named(p) for p in points}) == [
        "magnitude", "magnitude+reinitialised", "magnitude+shuffled", "random", "snip",
        "snip+reinitialised", "snip+shuffled"]
    assert all(p["epochs"] == 1 and p["procedure"] == "init" for p in points)
    assert "14 points, 0 to compute" in run(WHEN, project).stdout
    _set_when(project, _when(ratios=[8, 32]))
    plan = run(["prunelab", "plan"], project).stdout
    assert "when: 28 points, 14 to compute, 14 kept (~" in plan, plan  # timed by the first
    again = run(WHEN, project).stdout
    assert "28 points, 14 to compute" in again, again
    kept = {(named(p), p["ratio"], p["seed"]): p["test_correct"] for p in _points(project)}
    assert all(kept[(named(p), p["ratio"], p["seed"])] == p["test_correct"] for p in points)


def test_the_section_answers_the_question_at_init_and_the_sanity_checks(
        project: Path) -> None:
    _set_when(project, _when(ratios=[8, 32]))
    run(WHEN, project)
    points = _points(project)
    cfg = parse_config(yaml.safe_load((project / "params.yaml").read_text()))
    found = at_init(points, ["snip"], ["magnitude"], [8, 32], 0.005, 0.05, 0.8)
    (c,) = found["question"]
    assert (c["method"], c["other"], c["seeds"]) == ("snip", "magnitude", 2)
    assert set(found["sanity"]) == {"snip", "magnitude"}  # random has no variants
    assert sorted(x["other"] for x in found["sanity"]["snip"]["contrasts"]) == [
        "snip+reinitialised", "snip+shuffled"]
    text = section(points, found, QUESTION["ask"], 1, 3 + cfg.finetune.epochs, [0, 1],
                   0.5, 0.05)
    assert "## When to prune: at initialisation" in text
    assert "`snip` vs `magnitude`" in text and "`snip+shuffled`" in text
    assert "| snip | shuffled |" in text and "32×" in text
