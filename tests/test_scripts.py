"""Every shipped script runs, on a slice of MNIST; every benchmark explains itself."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from helpers import ROOT, copy_project, run, small_params

BENCHMARKS = sorted(p.name for p in (ROOT / "benchmarks").glob("*.py")
                    if not p.name.startswith("_"))


@pytest.mark.parametrize("name", BENCHMARKS)
def test_every_benchmark_says_how_to_run_it(name: str) -> None:
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / name), "--help"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert f"benchmarks/{name}" in done.stdout or "usage:" in done.stdout, done.stdout


@pytest.mark.slow
def test_the_scripts_run_on_a_slice(tmp_path: Path, mirror: Path) -> None:
    proj = copy_project(tmp_path, small_params(mirror, **{
        "prune.methods": ["magnitude", "random"], "finetune.epochs": 1}))
    run(["dvc", "repro", "download"], proj)
    compared = run([sys.executable, "scripts/compare_at_sparsity.py", "--weight", "0.9",
                    "--neuron", "0.5", "--seeds", "0"], proj).stdout
    for method in ("magnitude", "random"):
        assert f"| {method} |" in compared or f"| `{method}` |" in compared, compared
    table = run([sys.executable, "scripts/lenet_check.py", "report", "lenet300"], proj).stdout
    assert "lenet300" in table.lower(), table
    snip = run([sys.executable, "scripts/lenet_check.py", "snip-report", "lenet300"], proj).stdout
    assert "| Lee et al. 2019 (SNIP), Table 1 (the same procedure) | 1.70 → 2.40 at 50× |" in snip
    run(["dvc", "repro", "train"], proj)
    damping = run([sys.executable, "scripts/woodfisher_damping.py", "--dampings", "0.01", "1",
                   "--ratios", "4"], proj).stdout
    assert "| 0.01 |" in damping and "| 1 |" in damping and "best on validation" in damping, \
        damping
    before = (proj / "dvc.yaml").read_text()
    run([sys.executable, "scripts/sync_dvc_deps.py"], proj)
    assert (proj / "dvc.yaml").read_text() == before  # the shipped deps are current
