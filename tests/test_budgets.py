"""The budgets table (`analysis.budgets`, `scripts/budget_table.py`): it reads back what a
committed report states (the confirmatory run's report.md against the same run's
answer/*.json), and applies the plan's rule of what contradicts what."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from prunelab.analysis.budgets import budget_rows, contradicts, read_contrasts, verdict
from prunelab.errors import PrunelabError

ROOT = Path(__file__).resolve().parents[1]
CONFIRMATORY = ROOT / "reports" / "confirmatory"


def _slug(label: str) -> str:
    """The answer/*.json spelling of a label (`stages.report` writes it)."""
    return label.replace(", within the margin", "-within").replace(" beyond the margin",
                                                                   "-beyond")


def test_the_confirmatory_report_reads_back_as_its_answer_files() -> None:
    contrasts = read_contrasts((CONFIRMATORY / "report.md").read_text())
    files = sorted((CONFIRMATORY / "answer").glob("*.json"))
    assert len(contrasts) == len(files) == 27
    for f in files:
        stated = json.loads(f.read_text())
        granularity, criterion, _, reference = f.stem.removeprefix("scratch-").split("-")
        c = contrasts[granularity, criterion, reference]
        assert _slug(c.label) == stated["label"], f.name
        assert c.diff_pp == pytest.approx(stated["diff_pp"], abs=0.005), f.name
        assert c.low_pp <= c.diff_pp <= c.high_pp and c.seeds == 10
    # the report's own first lines, by hand
    taylor = contrasts["weight", "taylor", "magnitude"]
    assert (taylor.diff_pp, taylor.low_pp, taylor.high_pp) == (-0.86, -0.97, -0.75)
    assert taylor.label == "behind beyond the margin"


def test_a_line_without_its_granularity_is_refused() -> None:
    line = ("- `taylor` vs `magnitude`: -0.86 pp [-0.97, -0.75] over 10 seeds; ahead p = 1 "
            "— **behind beyond the margin**")
    with pytest.raises(PrunelabError, match="no granularity"):
        read_contrasts(line)
    with pytest.raises(PrunelabError, match="unknown label"):
        read_contrasts("**weight granularity** — x\n" + line.replace("behind beyond", "lost"))


@pytest.mark.parametrize(("a", "b", "expected"), [
    ("ahead", "behind, within the margin", True),          # reversed
    ("equivalent", "ahead beyond the margin", True),        # inside vs past the margin
    ("behind beyond the margin", "behind, within the margin", True),
    ("ahead", "ahead beyond the margin", False),            # same direction, more said
    ("equivalent", "behind, within the margin", False),     # both inside
    ("equivalent", "behind", False),                        # behind says nothing of m
    ("open", "ahead beyond the margin", False),             # open is no evidence
    ("behind beyond the margin", "open", False),
])
def test_what_contradicts_what(a: str, b: str, expected: bool) -> None:
    assert contradicts(a, b) is expected and contradicts(b, a) is expected


def test_verdicts_and_rows_against_the_reference() -> None:
    assert verdict("equivalent", "equivalent") == "same"
    assert verdict("equivalent", "open") == "open here"
    assert verdict("open", "behind") == "decided here"
    assert verdict("equivalent", "behind, within the margin") == "consistent"
    assert verdict("equivalent", "behind beyond the margin") == "changes"
    ref = read_contrasts((CONFIRMATORY / "report.md").read_text())
    key = ("weight", "woodfisher", "magnitude")
    assert ref[key].label == "equivalent"
    moved = dict(ref)
    moved[key] = replace(ref[key], diff_pp=-0.9, low_pp=-1.2, high_pp=-0.6,
                         label="behind beyond the margin")
    del moved["neuron", "movement", "magnitude"]
    rows = {(r["granularity"], r["contrast"]): r
            for r in budget_rows({1: moved, 3: ref, 10: None}, reference=3)}
    assert len(rows) == 27
    wf = rows["weight", "woodfisher vs magnitude"]
    assert wf["1"] == "-0.90 [-1.20, -0.60] behind beyond the margin"
    assert wf["10"] == "not run" and wf["3"].endswith(" equivalent")
    assert wf["against the reference"] == "1: changes"
    assert rows["neuron", "movement vs magnitude"]["1"] == "not run"
    assert rows["weight", "taylor vs magnitude"]["against the reference"] == "1: same"
    with pytest.raises(PrunelabError, match="reference budget"):
        budget_rows({1: moved, 3: None}, reference=3)


def test_the_script_prints_the_table() -> None:
    run = subprocess.run([sys.executable, "scripts/budget_table.py",
                          "--arm", f"3={CONFIRMATORY / 'report.md'}", "--arm", "1=none",
                          "--reference", "3"], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == ("| granularity | contrast | 1 epoch (pp) | 3 epochs (pp) "
                        "| against 3 epochs |")
    assert len([ln for ln in lines if ln.startswith("| weight |")]) == 10
    assert "| weight | taylor vs magnitude | not run | -0.86 [-0.97, -0.75] behind beyond " \
           "the margin | — |" in lines
    twice = subprocess.run([sys.executable, "scripts/budget_table.py", "--arm",
                            f"3={CONFIRMATORY / 'report.md'}", "--arm",
                            f"3={CONFIRMATORY / 'report.md'}", "--reference", "3"],
                           cwd=ROOT, capture_output=True, text=True)
    assert twice.returncode != 0 and "both state" in twice.stderr
    bad = subprocess.run([sys.executable, "scripts/budget_table.py", "--arm", "1=none",
                          "--reference", "3"], cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode != 0 and "--reference 3 is not one of the arms" in bad.stderr
