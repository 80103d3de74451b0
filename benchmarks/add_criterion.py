"""What adding one criterion costs: the example criterion (examples/my_criterion) brought
to a project whose pipeline has run, `dvc repro`, and the stages' own counts and wall time.

    .venv/bin/python benchmarks/add_criterion.py PROJECT   # a clone after `make pipeline`

In PROJECT: installs the example into PROJECT/.site (`pip install --target`, not into the
venv), adds `sqrt-taylor` to prune.methods and a question of its own to params.yaml, prints
`prunelab plan`, runs `dvc repro` with the example on PYTHONPATH, and prints each stage's
opening line (what it computed and kept) and the wall times. It leaves params.yaml,
dvc.lock and the outputs as that run made them: `git checkout . && dvc checkout` in
PROJECT goes back (the studies keep the new points; they cost nothing to keep).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import yaml

MINE = "sqrt-taylor"
LINES = re.compile(r"^(search: .*|prune: \d+ method.*|sweep study .*|oracle: \d+ seeds.*|"
                   r"prunelab \w+: done in .*|Stage '\w+' didn't change.*)$", re.M)


def main(project: Path) -> None:
    example = Path(__file__).resolve().parents[1] / "examples" / "my_criterion"
    site = project / ".site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--target", str(site), str(example)], check=True)
    params = yaml.safe_load((project / "params.yaml").read_text())
    if MINE not in params["prune"]["methods"]:
        params["prune"]["methods"].append(MINE)
        params["report"]["questions"].append({
            "name": "mine", "ask": "Does sqrt-taylor beat magnitude?", "criteria": [MINE],
            "references": ["magnitude"], "alpha": None, "equivalence_margin_pp": None})
        (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PYTHONPATH": str(site), "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    plan = subprocess.run(["prunelab", "plan"], cwd=project, env=env, check=True,
                          capture_output=True, text=True).stdout
    print("prunelab plan, before:\n" + plan)
    start = time.perf_counter()
    out = subprocess.run(["dvc", "repro"], cwd=project, env=env, check=True,
                         capture_output=True, text=True).stdout
    wall = time.perf_counter() - start
    print("dvc repro, each stage's own lines:")
    print("\n".join(m.group(0) for m in LINES.finditer(out)))
    print(f"dvc repro wall time: {wall:.0f} s")
    after = subprocess.run(["prunelab", "plan"], cwd=project, env=env, check=True,
                           capture_output=True, text=True).stdout
    print("\nprunelab plan, after:\n" + after)


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        raise SystemExit(0 if len(sys.argv) == 2 else 2)
    main(Path(sys.argv[1]).resolve())
