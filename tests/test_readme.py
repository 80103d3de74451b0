"""The README says what dvc.yaml and params.yaml do: its stage list and diagram name
dvc.yaml's stages, and its point count is the one params.yaml's sweep makes."""

from __future__ import annotations

import re

import yaml

from prunelab.config import load_config
from prunelab.records import sweep_series

from helpers import ROOT

README = (ROOT / "README.md").read_text()
STAGES = list(yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"])


def test_the_readme_lists_dvc_yaml_s_stages_in_order() -> None:
    (line,) = [x for x in README.splitlines()
               if x.startswith("make pipeline") and "dvc repro:" in x]
    assert line.split("dvc repro:")[1].strip().split(", ") == STAGES
    diagram = README.split("## Stages")[1].split("```")[1]
    assert set(re.findall(r"[a-z]+", diagram)) == set(STAGES)
    table = README.split("## Stages")[1].split("\n## ")[0]
    assert re.findall(r"^\| `([a-z]+)` \|", table, re.M) == sorted(
        STAGES, key=lambda s: (s != "criteria", STAGES.index(s)))


def test_the_readme_s_point_count_is_params_yaml_s() -> None:
    cfg = load_config(ROOT / "params.yaml")
    points = sum(len(x.ratios) for x in sweep_series(cfg)) * len(cfg.sweep.seeds)
    methods = len(cfg.prune.methods)
    said = re.findall(r"sweep's\s+(\d+) points — (\d+) methods × (\d+) granularities × "
                      r"(\d+) ratios × (\d+) seeds", README)
    assert said == [(str(points), str(methods), str(len(cfg.prune.granularities)),
                     str(len(cfg.sweep.ratios)), str(len(cfg.sweep.seeds)))]
    assert f"The sweep ({points} points by default" in README


def test_every_file_the_report_and_the_readme_link_is_in_the_checkout() -> None:
    """report.md's figures and the README's links open in any clone, before any rerun
    (the figures are committed, `cache: false`)."""
    for doc in (ROOT / "reports/report.md", ROOT / "README.md", ROOT / "docs/package.md"):
        links = re.findall(r"\]\(([^)#:]+)\)", doc.read_text())
        assert links or doc.name == "package.md"
        missing = [x for x in links if not (doc.parent / x).exists()]
        assert not missing, f"{doc.relative_to(ROOT)} links {missing}"


def test_the_committed_figures_are_small() -> None:
    """Every figure in Git (the report's and the experiments') stays about 200 KB or less,
    so a clone and a forge's page carry them cheaply: they are saved with at most 256
    colours (full-colour PNGs of the accuracy panels were 450 KB, the oracle scatter 600)."""
    pngs = sorted((ROOT / "reports").rglob("*.png"))
    assert pngs
    sizes = {str(p.relative_to(ROOT)): p.stat().st_size for p in pngs}
    assert max(sizes.values()) <= 250_000, sizes
